#include "wave_staging.h"

#include <algorithm>
#include <utility>

#include "staging_copy.h"

namespace torch_ext::detail {
namespace {

// The jobs that copy bytes [begin, begin + size) of the concatenation of
// `sources` to `destination`.
std::vector<CopyJob> window(const std::vector<StorageSlice>& sources, uint64_t begin, size_t size, char* destination) {
  std::vector<CopyJob> jobs;
  const uint64_t end = begin + size;
  uint64_t start = 0; // of the current source in the concatenation
  for (const StorageSlice& source : sources) {
    const uint64_t stop = start + source.size;
    if (stop > begin && start < end) {
      const uint64_t from = std::max(begin, start);
      const uint64_t to = std::min(end, stop);
      jobs.push_back({{source.storage, source.offset + (from - start), to - from}, destination + (from - begin)});
    }
    if (stop >= end) {
      break;
    }
    start = stop;
  }
  return jobs;
}

} // namespace

WaveStaging::WaveStaging(const std::vector<char*>& buffers, size_t capacity) : capacity_(capacity) {
  for (char* buffer : buffers) {
    empty_.push_back({buffer, 0});
  }
}

WaveStaging::Wave WaveStaging::take(std::deque<Wave>& from) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return error_ || !from.empty(); });
  if (error_) {
    std::rethrow_exception(error_);
  }
  Wave wave = from.front();
  from.pop_front();
  return wave;
}

void WaveStaging::put(std::deque<Wave>& to, Wave wave) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    to.push_back(wave);
  }
  changed_.notify_all();
}

void WaveStaging::fail(std::exception_ptr error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_) {
      error_ = std::move(error);
    }
  }
  changed_.notify_all();
}

void WaveStaging::stage(const std::vector<StorageSlice>& sources, int threads) {
  uint64_t total = 0;
  for (const StorageSlice& source : sources) {
    total += source.size;
  }
  for (uint64_t done = 0; done < total;) {
    Wave wave = take(empty_);
    wave.size = static_cast<size_t>(std::min<uint64_t>(capacity_, total - done));
    try {
      copy_bytes(window(sources, done, wave.size, wave.data), threads);
    } catch (...) {
      fail(std::current_exception());
      throw;
    }
    put(full_, wave);
    done += wave.size;
  }
}

PlanBytes::Span WaveStaging::next() {
  try {
    writing_ = take(full_);
  } catch (...) {
    // Only the stager fails the waves while the writer still takes them.
    throw StagingFailed{std::current_exception()};
  }
  return {writing_.data, writing_.size};
}

void WaveStaging::written() {
  put(empty_, {writing_.data, 0});
}

} // namespace torch_ext::detail
