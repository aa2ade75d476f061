#include "staging.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <c10/util/Exception.h>
#include <c10/util/ParallelGuard.h>

#include "torch_ext/csrc/state/state_value.h"

namespace torch_ext::detail {
namespace {

// Large storages are copied in pieces so that several threads share them.
constexpr size_t kPieceBytes = size_t{16} << 20;

} // namespace

// Bytes [offset, offset + size) of `source` to `destination`.
struct StateCopy::Task {
  c10::Storage source;
  size_t offset = 0;
  size_t size = 0;
  void* destination = nullptr;
};

namespace {

using CopyTask = StateCopy::Task;

// A byte tensor over all of `storage`, for copies between devices.
at::Tensor bytes_of(const c10::Storage& storage) {
  at::Tensor bytes = at::empty({0}, at::TensorOptions().dtype(at::kByte).device(storage.device()));
  bytes.set_(storage, 0, {static_cast<int64_t>(storage.nbytes())}, {1});
  return bytes;
}

void run_task(const CopyTask& task) {
  if (task.source.device().is_cpu()) {
    std::memcpy(task.destination, static_cast<const char*>(task.source.data()) + task.offset, task.size);
    return;
  }
  at::Tensor destination = at::from_blob(task.destination, {static_cast<int64_t>(task.size)}, at::kByte);
  destination.copy_(bytes_of(task.source).narrow(0, static_cast<int64_t>(task.offset), static_cast<int64_t>(task.size)));
}

// Appends the tasks that copy [offset, offset + size) of `source`, in pieces.
void add_tasks(std::vector<CopyTask>& tasks, const c10::Storage& source, size_t offset, size_t size, char* destination) {
  if (size == 0) {
    return;
  }
  if (!source.device().is_cpu()) {
    tasks.push_back({source, offset, size, destination}); // one copy from the device
    return;
  }
  for (size_t done = 0; done < size; done += kPieceBytes) {
    tasks.push_back({source, offset + done, std::min(kPieceBytes, size - done), destination + done});
  }
}

// Runs the tasks, which copy consecutive bytes of one stream in order, and
// tells `progress` how much of the stream is copied from its start.
void run_tasks(const std::vector<CopyTask>& tasks, int threads, StagingProgress* progress) {
  std::atomic<size_t> next{0};
  std::exception_ptr first_error;
  std::mutex mutex; // guards first_error and the progress below
  std::vector<bool> done(tasks.size(), false);
  size_t done_prefix = 0;
  uint64_t done_bytes = 0;
  auto work = [&] {
    // Our copies stay on this thread instead of taking the intra-op pool
    // from the training loop.
    c10::ParallelGuard serial(true);
    for (size_t i = next++; i < tasks.size(); i = next++) {
      try {
        run_task(tasks[i]);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!first_error) {
          first_error = std::current_exception();
        }
        next = tasks.size();
        return;
      }
      if (progress != nullptr) {
        std::lock_guard<std::mutex> lock(mutex);
        done[i] = true;
        const size_t before = done_prefix;
        while (done_prefix < tasks.size() && done[done_prefix]) {
          done_bytes += tasks[done_prefix++].size;
        }
        if (done_prefix != before) {
          progress->advance_to(done_bytes);
        }
      }
    }
  };
  std::vector<std::thread> helpers;
  const size_t extra = std::min<size_t>(static_cast<size_t>(std::max(threads, 1) - 1), tasks.size());
  helpers.reserve(extra);
  for (size_t i = 0; i < extra; ++i) {
    helpers.emplace_back(work);
  }
  work();
  for (std::thread& helper : helpers) {
    helper.join();
  }
  if (first_error) {
    if (progress != nullptr) {
      progress->fail(first_error);
    }
    std::rethrow_exception(first_error);
  }
}

// Builds the copy while visit_state walks the original; tensors are
// replaced by views of a staged storage per source storage, which
// `stage_storage(source)` makes.
template <typename StageStorage>
class Stager : public IValueBuilder {
 public:
  explicit Stager(StageStorage stage_storage) : stage_storage_(std::move(stage_storage)) {}

  void tensor(const at::Tensor& original) {
    // A conjugate or negative view has no bits of its own to copy.
    const at::Tensor tensor = original.resolve_conj().resolve_neg();
    const c10::StorageImpl* source = tensor.storage().unsafeGetStorageImpl();
    auto [staged, added] = staged_.try_emplace(source);
    if (added) {
      staged->second = {tensor.storage(), stage_storage_(tensor.storage())};
    }
    at::Tensor view = at::empty({0}, at::TensorOptions().dtype(tensor.dtype()));
    view.set_(staged->second.second, tensor.storage_offset(), tensor.sizes(), tensor.strides());
    view.set_requires_grad(tensor.requires_grad());
    IValueBuilder::tensor(view);
  }

 private:
  StageStorage stage_storage_;
  // Source storage (held, so that no other takes its address) -> copy.
  std::unordered_map<const c10::StorageImpl*, std::pair<c10::Storage, c10::Storage>> staged_;
};

template <typename StageStorage>
c10::IValue build_copy(const c10::IValue& state_dict, StageStorage stage_storage) {
  Stager<StageStorage> stager(std::move(stage_storage));
  KeyPath path;
  visit_state(state_dict, stager, path);
  return stager.take();
}

// The devices other than the CPU that hold a tensor of a state dict.
struct DeviceCollector : TensorVisitor {
  void tensor(const at::Tensor& tensor) {
    const c10::Device device = tensor.device();
    if (!device.is_cpu() && std::find(devices.begin(), devices.end(), device) == devices.end()) {
      devices.push_back(device);
    }
  }
  std::vector<c10::Device> devices;
};

} // namespace

void StagingProgress::wait_for(uint64_t bytes) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return error_ || copied_ >= bytes; });
  if (error_) {
    throw StagingFailed{error_};
  }
}

void StagingProgress::advance_to(uint64_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    copied_ = std::max(copied_, bytes);
  }
  changed_.notify_all();
}

void StagingProgress::fail(std::exception_ptr error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_) {
      error_ = std::move(error);
    }
  }
  changed_.notify_all();
}

StateCopy::StateCopy(const c10::IValue& state_dict, std::vector<c10::Storage>& buffers) {
  std::vector<c10::Storage> previous = std::exchange(buffers, {});
  state_ = build_copy(state_dict, [&](const c10::Storage& source) {
    const size_t bytes = source.nbytes();
    const size_t index = buffers.size();
    c10::Storage destination;
    if (index < previous.size() && previous[index].use_count() == 1 && previous[index].nbytes() == bytes) {
      destination = std::move(previous[index]);
    } else {
      if (index < previous.size()) {
        previous[index] = c10::Storage(); // its memory may serve this allocation
      }
      destination = c10::Storage(c10::Storage::use_byte_size_t(), bytes, c10::GetCPUAllocator(), false);
    }
    buffers.push_back(destination);
    add_tasks(tasks_, source, 0, bytes, static_cast<char*>(destination.mutable_data()));
    return destination;
  });
  storages_ = buffers;
}

StateCopy::~StateCopy() = default;

void StateCopy::run(int threads, StagingProgress* progress) {
  run_tasks(tasks_, threads, progress);
}

c10::IValue stage_state_dict(const c10::IValue& state_dict, int threads, std::vector<c10::Storage>& buffers) {
  StateCopy copy(state_dict, buffers);
  copy.run(threads);
  return copy.state();
}

StagingPlan plan_staging(const c10::IValue& state_dict) {
  StagingPlan plan;
  plan.state = build_copy(state_dict, [&plan](const c10::Storage& source) {
    c10::Storage staged(
        c10::Storage::use_byte_size_t(), source.nbytes(), c10::DataPtr(nullptr, c10::Device(c10::kCPU)), nullptr, false);
    plan.staged.push_back(staged);
    plan.sources.push_back(source);
    return staged;
  });
  return plan;
}

void copy_storage_bytes(
    const std::vector<c10::Storage>& sources,
    uint64_t begin,
    size_t size,
    void* destination,
    int threads) {
  std::vector<CopyTask> tasks;
  auto* out = static_cast<char*>(destination);
  const uint64_t end = begin + size;
  uint64_t start = 0; // of the current source in the concatenation
  for (const c10::Storage& source : sources) {
    const uint64_t stop = start + source.nbytes();
    if (stop > begin && start < end) {
      const uint64_t from = std::max(begin, start);
      const uint64_t to = std::min(end, stop);
      add_tasks(tasks, source, from - start, to - from, out + (from - begin));
    }
    if (stop >= end) {
      break;
    }
    start = stop;
  }
  run_tasks(tasks, threads, nullptr);
}

DeviceFence::DeviceFence(const c10::IValue& state_dict) {
  DeviceCollector collector;
  KeyPath path;
  try {
    visit_state(state_dict, collector, path);
  } catch (const c10::Error&) {
    // A value a checkpoint cannot hold: staging reports it, on its thread.
  }
  for (const c10::Device device : collector.devices) {
    c10::Event event(device.type());
    event.record(c10::impl::VirtualGuardImpl(device.type()).getStream(device));
    events_.push_back(std::move(event));
  }
}

void DeviceFence::wait() const {
  for (const c10::Event& event : events_) {
    event.synchronize();
  }
}

} // namespace torch_ext::detail
