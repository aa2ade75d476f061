#include <torch_ext/state_dict.h>

#include <mutex>

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>

namespace torch_ext {

// As Python's torch.get_rng_state() and torch.set_rng_state(): the
// generator's own state format, under its mutex.
at::Tensor get_rng_state() {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

void set_rng_state(const at::Tensor& state) {
  TORCH_CHECK_TYPE(
      state.defined() && state.scalar_type() == at::kByte && state.device().is_cpu(),
      "set_rng_state expected a uint8 CPU tensor (from get_rng_state or Python's torch.get_rng_state()), got ",
      state.defined() ? state.toString() : "an undefined tensor");
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

} // namespace torch_ext
