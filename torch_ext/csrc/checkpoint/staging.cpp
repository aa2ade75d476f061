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
#include <c10/util/Exception.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <c10/util/ParallelGuard.h>

#include "state_value.h"

namespace torch_ext::detail {
namespace {

// Large storages are copied in pieces so that several threads share them.
constexpr size_t kPieceBytes = size_t{16} << 20;

struct CopyTask {
  c10::Storage source;
  c10::Storage destination;
  size_t offset = 0; // bytes
  size_t size = 0; // bytes
};

// A byte tensor over all of `storage`, for copies between devices.
at::Tensor bytes_of(const c10::Storage& storage) {
  at::Tensor bytes = at::empty({0}, at::TensorOptions().dtype(at::kByte).device(storage.device()));
  bytes.set_(storage, 0, {static_cast<int64_t>(storage.nbytes())}, {1});
  return bytes;
}

// Builds the copy while visit_state walks the original; tensors are
// replaced by views of the staged storages.
class Stager : public IValueBuilder {
 public:
  explicit Stager(std::vector<c10::Storage> previous) : previous_(std::move(previous)) {}

  void tensor(const at::Tensor& original) {
    // A conjugate or negative view has no bits of its own to copy.
    const at::Tensor tensor = original.resolve_conj().resolve_neg();
    const c10::StorageImpl* source = tensor.storage().unsafeGetStorageImpl();
    auto [staged, added] = staged_.try_emplace(source);
    if (added) {
      staged->second = {tensor.storage(), stage_storage(tensor.storage())};
    }
    at::Tensor view = at::empty({0}, at::TensorOptions().dtype(tensor.dtype()));
    view.set_(staged->second.second, tensor.storage_offset(), tensor.sizes(), tensor.strides());
    view.set_requires_grad(tensor.requires_grad());
    IValueBuilder::tensor(view);
  }

  std::vector<c10::Storage> take_buffers() {
    return std::move(buffers_);
  }

  void run(int threads) {
    std::atomic<size_t> next{0};
    std::exception_ptr first_error;
    std::mutex error_mutex;
    auto work = [&] {
      // Our copies stay on this thread instead of taking the intra-op pool
      // from the training loop.
      c10::ParallelGuard serial(true);
      for (size_t i = next++; i < tasks_.size(); i = next++) {
        try {
          run_task(tasks_[i]);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (!first_error) {
            first_error = std::current_exception();
          }
          next = tasks_.size();
        }
      }
    };
    std::vector<std::thread> helpers;
    const size_t extra = std::min<size_t>(static_cast<size_t>(std::max(threads, 1) - 1), tasks_.size());
    helpers.reserve(extra);
    for (size_t i = 0; i < extra; ++i) {
      helpers.emplace_back(work);
    }
    work();
    for (std::thread& helper : helpers) {
      helper.join();
    }
    if (first_error) {
      std::rethrow_exception(first_error);
    }
  }

 private:
  c10::Storage stage_storage(const c10::Storage& source) {
    const size_t bytes = source.nbytes();
    const size_t index = buffers_.size();
    c10::Storage destination;
    if (index < previous_.size() && previous_[index].use_count() == 1 && previous_[index].nbytes() == bytes) {
      destination = std::move(previous_[index]);
    } else {
      if (index < previous_.size()) {
        previous_[index] = c10::Storage(); // its memory may serve this allocation
      }
      destination = c10::Storage(c10::Storage::use_byte_size_t(), bytes, c10::GetCPUAllocator(), false);
    }
    buffers_.push_back(destination);
    if (source.device().is_cpu()) {
      for (size_t offset = 0; offset < bytes; offset += kPieceBytes) {
        tasks_.push_back({source, destination, offset, std::min(kPieceBytes, bytes - offset)});
      }
    } else {
      tasks_.push_back({source, destination, 0, 0});
    }
    return destination;
  }

  static void run_task(const CopyTask& task) {
    if (task.size == 0) {
      if (task.source.nbytes() > 0) {
        bytes_of(task.destination).copy_(bytes_of(task.source)); // from a device
      }
      return;
    }
    std::memcpy(
        static_cast<char*>(task.destination.mutable_data()) + task.offset,
        static_cast<const char*>(task.source.data()) + task.offset,
        task.size);
  }

  std::vector<CopyTask> tasks_;
  std::vector<c10::Storage> previous_;
  std::vector<c10::Storage> buffers_;
  // Source storage (held, so that no other takes its address) -> copy.
  std::unordered_map<const c10::StorageImpl*, std::pair<c10::Storage, c10::Storage>> staged_;
};

// The devices other than the CPU that hold a tensor of a state dict.
struct DeviceCollector {
  void leaf(const c10::IValue& /*value*/, ValueKind /*kind*/) {}
  void begin(const c10::IValue& /*container*/, ValueKind /*kind*/) {}
  void key(const c10::IValue& /*key*/) {}
  void attributes(const c10::impl::GenericDict& /*attributes*/) {}
  void end(const c10::IValue& /*container*/, ValueKind /*kind*/) {}
  void tensor(const at::Tensor& tensor) {
    const c10::Device device = tensor.device();
    if (!device.is_cpu() && std::find(devices.begin(), devices.end(), device) == devices.end()) {
      devices.push_back(device);
    }
  }
  std::vector<c10::Device> devices;
};

} // namespace

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

c10::IValue stage_state_dict(const c10::IValue& state_dict, int threads, std::vector<c10::Storage>& buffers) {
  Stager stager(std::exchange(buffers, {}));
  KeyPath path;
  visit_state(state_dict, stager, path);
  stager.run(threads);
  buffers = stager.take_buffers();
  return stager.take();
}

} // namespace torch_ext::detail
