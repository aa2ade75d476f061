#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <vector>

#include "torch_ext/csrc/format/write_plan.h"

namespace torch_ext::detail {

// The staging of a save in waves (SaveOptions::max_staging_bytes): the
// stager copies the bytes of a write plan's sources, concatenated in its
// order, into a few buffers in turn, and the writer reads each full buffer,
// through PlanBytes, and hands it back once written. Staging memory is the
// buffers, whatever the size of the state dict, and the output is the same
// as a whole save's. Either side's failure is handed to the other, so that
// neither waits forever.
class WaveStaging final : public PlanBytes {
 public:
  // `buffers` of `capacity` bytes each, which outlive this.
  WaveStaging(const std::vector<char*>& buffers, size_t capacity);

  // The stager's side: fills the waves with the bytes of `sources` in order,
  // copied by `threads` threads. Returns once the last byte is staged: the
  // caller's tensors may change from then on. Throws the writer's error
  // instead if it failed.
  void stage(const std::vector<StorageSlice>& sources, int threads);

  // The writer's side: a full wave (throws StagingFailed if the stager
  // failed), then handed back.
  Span next() override;
  void written() override;

  // Wakes the other side with `error`. The first error stays.
  void fail(std::exception_ptr error);

 private:
  struct Wave {
    char* data;
    size_t size; // bytes filled
  };
  Wave take(std::deque<Wave>& from);
  void put(std::deque<Wave>& to, Wave wave);

  const size_t capacity_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Wave> empty_;
  std::deque<Wave> full_;
  std::exception_ptr error_;
  Wave writing_{nullptr, 0}; // the writer's
};

} // namespace torch_ext::detail
