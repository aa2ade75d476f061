#pragma once

#include <ATen/core/ivalue.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

namespace torch_ext::detail {

// A save in waves (AsyncCheckpointerOptions::max_staging_bytes): the stager
// copies the bytes of the storages, concatenated in key order, into a few
// buffers in turn, and the writer streams each full buffer into the file and
// hands it back. Staging memory is the buffers, whatever the size of the state
// dict, and the file is the one write_checkpoint_file writes.

// What a save in waves needs before any byte is copied: the pickle of the
// copy (pickle_state of plan_staging's state), the size of each storage
// record and the caller's storage behind it, in key order.
struct WavePlan {
  std::string pickle;
  std::vector<uint64_t> sizes;
  std::vector<c10::Storage> sources;
};
// Throws as stage_state_dict does, for a value a checkpoint cannot hold.
WavePlan plan_waves(const c10::IValue& state_dict);

// The buffers between the stager and the writer of one save. Either side's
// failure is handed to the other, so that neither waits forever.
class WavePipe {
 public:
  struct Wave {
    char* data;
    size_t size; // bytes filled
  };
  // `buffers` of `capacity` bytes each, which outlive the pipe.
  WavePipe(const std::vector<char*>& buffers, size_t capacity);

  size_t capacity() const {
    return capacity_;
  }
  // Blocks until a buffer is free (stager) or full (writer); throws the
  // other side's error instead, if it failed (to the writer as a
  // StagingFailed).
  Wave take_empty();
  Wave take_full();
  void put_full(Wave wave);
  void put_empty(Wave wave);
  // Wakes the other side with `error`. The first error stays.
  void fail(std::exception_ptr error);

 private:
  Wave take(std::deque<Wave>& from);

  const size_t capacity_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Wave> empty_;
  std::deque<Wave> full_;
  std::exception_ptr error_;
};

// The stager's side: fills the waves with the bytes of `sources` in order,
// copied by `threads` threads. Returns once the last byte is staged: the
// caller's tensors may change from then on.
void stage_waves(const std::vector<c10::Storage>& sources, WavePipe& pipe, int threads);

// The writer's side: writes the checkpoint of `rank` in the folder `path`
// (durably, as write_checkpoint) from `plan`'s pickle and the waves, handing
// each back once written.
void write_waves(const std::string& path, int64_t rank, const WavePlan& plan, WavePipe& pipe);

} // namespace torch_ext::detail
