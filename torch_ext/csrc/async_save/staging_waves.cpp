#include "staging_waves.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/pickle/pickler.h"
#include "torch_ext/csrc/torch_save/checkpoint_file_writer.h"

#include "staging.h"

namespace torch_ext::detail {

WavePlan plan_waves(const c10::IValue& state_dict) {
  StagingPlan staging = plan_staging(state_dict);
  PickledState pickled = pickle_state(staging.state);
  // The file's storage keys are the pickler's order: take the sources in it
  // rather than assume that both walks meet storages alike.
  std::unordered_map<const c10::StorageImpl*, size_t> source_of;
  for (size_t i = 0; i < staging.staged.size(); ++i) {
    source_of.emplace(staging.staged[i].unsafeGetStorageImpl(), i);
  }
  WavePlan plan;
  plan.pickle = std::move(pickled.pickle);
  for (const c10::Storage& storage : pickled.storages) {
    const auto found = source_of.find(storage.unsafeGetStorageImpl());
    TORCH_INTERNAL_ASSERT(found != source_of.end(), "the pickle of a staged state names a storage staging did not make");
    plan.sizes.push_back(storage.nbytes());
    plan.sources.push_back(staging.sources[found->second]);
  }
  return plan;
}

WavePipe::WavePipe(const std::vector<char*>& buffers, size_t capacity) : capacity_(capacity) {
  for (char* buffer : buffers) {
    empty_.push_back({buffer, 0});
  }
}

WavePipe::Wave WavePipe::take(std::deque<Wave>& from) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return error_ || !from.empty(); });
  if (error_) {
    std::rethrow_exception(error_);
  }
  Wave wave = from.front();
  from.pop_front();
  return wave;
}

WavePipe::Wave WavePipe::take_empty() {
  return take(empty_);
}

WavePipe::Wave WavePipe::take_full() {
  try {
    return take(full_);
  } catch (...) {
    // Only the stager fails the pipe while the writer still takes waves.
    throw StagingFailed{std::current_exception()};
  }
}

void WavePipe::put_full(Wave wave) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    full_.push_back(wave);
  }
  changed_.notify_all();
}

void WavePipe::put_empty(Wave wave) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    empty_.push_back({wave.data, 0});
  }
  changed_.notify_all();
}

void WavePipe::fail(std::exception_ptr error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_) {
      error_ = std::move(error);
    }
  }
  changed_.notify_all();
}

void stage_waves(const std::vector<c10::Storage>& sources, WavePipe& pipe, int threads) {
  uint64_t total = 0;
  for (const c10::Storage& source : sources) {
    total += source.nbytes();
  }
  for (uint64_t done = 0; done < total;) {
    WavePipe::Wave wave = pipe.take_empty();
    wave.size = static_cast<size_t>(std::min<uint64_t>(pipe.capacity(), total - done));
    try {
      copy_storage_bytes(sources, done, wave.size, wave.data, threads);
    } catch (...) {
      pipe.fail(std::current_exception());
      throw;
    }
    pipe.put_full(wave);
    done += wave.size;
  }
}

void write_waves(const std::string& path, int64_t rank, const WavePlan& plan, WavePipe& pipe) {
  try {
    CheckpointFileWriter out(create_checkpoint_folder(path, rank), plan.pickle, plan.sizes);
    while (out.left() > 0) {
      const WavePipe::Wave wave = pipe.take_full();
      out.append(wave.data, wave.size);
      pipe.put_empty(wave);
    }
    out.commit();
  } catch (...) {
    pipe.fail(std::current_exception());
    throw;
  }
}

} // namespace torch_ext::detail
