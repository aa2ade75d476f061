#pragma once

#include <ATen/core/ivalue.h>
#include <c10/core/Event.h>

#include <vector>

namespace torch_ext::detail {

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
