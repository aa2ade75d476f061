#pragma once

#include <ATen/core/ivalue.h>
#include <c10/core/Event.h>

#include <vector>

namespace torch_ext::detail {

// A deep copy of `state_dict` on the CPU that shares nothing with the
// caller's: containers keep their kind (OrderedDict, torch.Size), and every
// storage is copied once, whole, with its tensors as views of the copy (same
// offsets, sizes and strides), so tensors that shared a storage still do.
// Copied by `threads` threads (the calling one and threads - 1 more). A
// value a checkpoint cannot hold throws a TypeError naming its entry.
//
// `buffers` holds the storages of the previous copy, in the same order. One
// that nothing else references any more and has the size needed is copied
// into instead of new memory, as upstream's stager reuses its buffers: a
// checkpoint of the same model then allocates and page-faults nothing. On
// return `buffers` holds this copy's storages.
c10::IValue stage_state_dict(const c10::IValue& state_dict, int threads, std::vector<c10::Storage>& buffers);

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
