#include "wrap_future_op.h"

#include <c10/util/Exception.h>

#include <torch_ext/future_utils.h>

namespace torch_ext::ops {

void wrap_future_boxed(
    const c10::OperatorHandle& /*op*/,
    torch::jit::Stack* stack) {
  c10::IValue original_result = torch::jit::pop(*stack);
  TORCH_CHECK_TYPE(
      original_result.isFuture(),
      "torch_ext::wrap_future expected original_result to be a Future(t), got ",
      original_result.tagKind());
  torch::jit::push(*stack, wrap_future(original_result));
}

} // namespace torch_ext::ops
