#pragma once

#include <c10/core/Storage.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <vector>

#include "torch_ext/csrc/format/write_plan.h"

namespace torch_ext::detail {

// The staging of a save without max_staging_bytes: the bytes of `sources`
// (a write plan's, in its order) copied at once, each slice into a buffer of
// its own that the next save reuses, while the writer reads them, through
// PlanBytes, a piece at a time as soon as each piece is copied.
class WholeStaging final : public PlanBytes {
 public:
  // `kept` holds the previous save's buffers, in the same order. One that
  // nothing else references any more and has the size needed is copied into
  // instead of new memory, as upstream's stager reuses its buffers: a
  // checkpoint of the same model then allocates and page-faults nothing.
  // After the constructor `kept` holds this save's buffers.
  WholeStaging(std::vector<StorageSlice> sources, std::vector<c10::Storage>& kept);

  // The stager's side: copies the bytes with `threads` threads. On failure
  // the writer's next() throws StagingFailed, and run() the copy's error.
  void run(int threads);

  // The writer's side.
  Span next() override;

 private:
  std::vector<StorageSlice> sources_; // until run() is over: the caller's
  std::vector<c10::Storage> buffers_;
  std::vector<uint64_t> sizes_;

  std::mutex mutex_;
  std::condition_variable changed_;
  uint64_t copied_ = 0; // bytes of the concatenation, from its start
  std::exception_ptr error_;

  // Where the writer is: a slice, and the bytes of it already handed over.
  size_t slice_ = 0;
  uint64_t done_ = 0;
  uint64_t start_ = 0; // of slice_ in the concatenation
};

} // namespace torch_ext::detail
