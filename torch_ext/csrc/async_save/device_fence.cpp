#include "device_fence.h"

#include <algorithm>
#include <utility>

#include <c10/core/impl/VirtualGuardImpl.h>
#include <c10/util/Exception.h>

#include "torch_ext/csrc/state/state_value.h"

namespace torch_ext::detail {
namespace {

// The devices other than the CPU that hold a tensor of a state dict.
struct DeviceCollector : TensorVisitor {
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

} // namespace torch_ext::detail
