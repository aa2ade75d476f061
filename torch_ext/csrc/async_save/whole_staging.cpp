#include "whole_staging.h"

#include <algorithm>
#include <utility>

#include <c10/core/CPUAllocator.h>

#include "staging_copy.h"

namespace torch_ext::detail {
namespace {

// The writer waits for the copy a piece at a time.
constexpr uint64_t kWaitPieceBytes = uint64_t{4} << 20;

} // namespace

WholeStaging::WholeStaging(std::vector<StorageSlice> sources, std::vector<c10::Storage>& kept)
    : sources_(std::move(sources)) {
  std::vector<c10::Storage> previous = std::exchange(kept, {});
  for (size_t i = 0; i < sources_.size(); ++i) {
    const uint64_t bytes = sources_[i].size;
    sizes_.push_back(bytes);
    if (i < previous.size() && previous[i].use_count() == 1 && previous[i].nbytes() == bytes) {
      kept.push_back(std::move(previous[i]));
      continue;
    }
    if (i < previous.size()) {
      previous[i] = c10::Storage(); // its memory may serve this allocation
    }
    kept.emplace_back(c10::Storage::use_byte_size_t(), bytes, c10::GetCPUAllocator(), false);
  }
  buffers_ = kept;
}

void WholeStaging::run(int threads) {
  std::vector<CopyJob> jobs;
  jobs.reserve(sources_.size());
  for (size_t i = 0; i < sources_.size(); ++i) {
    jobs.push_back({sources_[i], static_cast<char*>(buffers_[i].mutable_data())});
  }
  std::exception_ptr error;
  try {
    copy_bytes(jobs, threads, [this](uint64_t copied) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        copied_ = copied;
      }
      changed_.notify_all();
    });
  } catch (...) {
    error = std::current_exception();
  }
  // The caller's tensors are free to go while the write goes on.
  jobs.clear();
  sources_.clear();
  if (error) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = error;
    }
    changed_.notify_all();
    std::rethrow_exception(error);
  }
}

PlanBytes::Span WholeStaging::next() {
  while (done_ == sizes_[slice_]) {
    start_ += sizes_[slice_++];
    done_ = 0;
  }
  const uint64_t piece = std::min(kWaitPieceBytes, sizes_[slice_] - done_);
  {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return error_ || copied_ >= start_ + done_ + piece; });
    if (error_) {
      throw StagingFailed{error_};
    }
  }
  const Span span{static_cast<const char*>(buffers_[slice_].data()) + done_, static_cast<size_t>(piece)};
  done_ += piece;
  return span;
}

} // namespace torch_ext::detail
