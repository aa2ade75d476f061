#pragma once

#include <ATen/core/ivalue.h>
#include <c10/core/Event.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <vector>

namespace torch_ext::detail {

// What the writer of a save throws when the copy it writes failed: the
// copy's error, told apart from a failure of the write itself.
struct StagingFailed {
  std::exception_ptr error;
};

// How far a copy has got: the bytes of its storages, concatenated in the
// order it fills them, copied so far. The writer of a save waits on it, so
// that it writes what is staged while the rest is being copied.
class StagingProgress {
 public:
  // Blocks until `bytes` are copied; throws StagingFailed if the copy failed.
  void wait_for(uint64_t bytes);
  void advance_to(uint64_t bytes);
  void fail(std::exception_ptr error);

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  uint64_t copied_ = 0;
  std::exception_ptr error_;
};

// A deep copy of `state_dict` on the CPU that shares nothing with the
// caller's: containers keep their kind (OrderedDict, torch.Size), and every
// storage is copied once, whole, with its tensors as views of the copy (same
// offsets, sizes and strides), so tensors that shared a storage still do. A
// value a checkpoint cannot hold throws a TypeError naming its entry, from
// the constructor.
//
// Made in two steps, so that a writer can start on the copy while it is
// made: the constructor builds the copy's values over storages that run()
// then fills.
//
// `buffers` holds the storages of the previous copy, in the same order. One
// that nothing else references any more and has the size needed is copied
// into instead of new memory, as upstream's stager reuses its buffers: a
// checkpoint of the same model then allocates and page-faults nothing. After
// the constructor `buffers` holds this copy's storages.
class StateCopy {
 public:
  struct Task;
  StateCopy(const c10::IValue& state_dict, std::vector<c10::Storage>& buffers);
  ~StateCopy();
  StateCopy(const StateCopy&) = delete;
  StateCopy& operator=(const StateCopy&) = delete;

  const c10::IValue& state() const {
    return state_;
  }
  // The copy's storages, in the order run() fills them.
  const std::vector<c10::Storage>& storages() const {
    return storages_;
  }
  // Copies the bytes with `threads` threads (the calling one and threads - 1
  // more), telling `progress`, if given, each time the part of storages()
  // filled from the start grows; on failure, fails it and throws.
  void run(int threads, StagingProgress* progress = nullptr);

 private:
  c10::IValue state_;
  std::vector<c10::Storage> storages_;
  std::vector<Task> tasks_;
};

// StateCopy(state_dict, buffers), run on `threads` threads: the copy.
c10::IValue stage_state_dict(const c10::IValue& state_dict, int threads, std::vector<c10::Storage>& buffers);

// The copy stage_state_dict would make, without its bytes: the same values,
// with tensors as views of storages that have their sizes but no data, so
// that it can be pickled before anything is copied. `sources[i]` is the
// caller's storage that `staged[i]` stands for; both in the order first met.
// Throws as StateCopy does.
struct StagingPlan {
  c10::IValue state;
  std::vector<c10::Storage> staged;
  std::vector<c10::Storage> sources;
};
StagingPlan plan_staging(const c10::IValue& state_dict);

// Copies bytes [begin, begin + size) of the concatenation of `sources` into
// `destination`, with `threads` threads (the calling one and threads - 1
// more).
void copy_storage_bytes(
    const std::vector<c10::Storage>& sources,
    uint64_t begin,
    size_t size,
    void* destination,
    int threads);

// What the copies of one save wait for: an event recorded, on the thread
// that calls save(), on the current stream of every device (not the CPU)
// that holds a tensor of the state dict. Staging runs on another thread,
// whose current stream may be another: waiting for the events first, it sees
// all the work queued before save(), on whatever stream it was queued.
class DeviceFence {
 public:
  explicit DeviceFence(const c10::IValue& state_dict);
  // Blocks until the work queued before the fence is done.
  void wait() const;

 private:
  std::vector<c10::Event> events_;
};

} // namespace torch_ext::detail
