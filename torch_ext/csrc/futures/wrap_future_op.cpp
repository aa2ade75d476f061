// torch.ops.torch_ext.wrap_future: the C++ wrap_future behind the dispatcher,
// for TorchScript and Python.
#include <torch/library.h>

#include <c10/util/Exception.h>

#include <torch_ext/future_utils.h>

namespace torch_ext::ops {
namespace {

// Boxed: schema inference has no case for futures, and a typed kernel
// taking one aborts the process at load time.
void wrap_future_boxed(const c10::OperatorHandle& /*op*/, torch::jit::Stack* stack) {
  c10::IValue original_result = torch::jit::pop(*stack);
  TORCH_CHECK_TYPE(
      original_result.isFuture(),
      "torch_ext::wrap_future expected original_result to be a Future(t), got ",
      original_result.tagKind());
  torch::jit::push(*stack, wrap_future(original_result));
}

} // namespace
} // namespace torch_ext::ops

TORCH_LIBRARY_FRAGMENT(torch_ext, m) {
  m.def(
      "wrap_future(Future(t) original_result) -> Future(NoneType)",
      torch::CppFunction::makeFromBoxedFunction<&torch_ext::ops::wrap_future_boxed>());
}
