#pragma once

#include <ATen/core/stack.h>

namespace c10 {
class OperatorHandle;
} // namespace c10

namespace torch_ext::ops {

// Boxed kernel of torch_ext::wrap_future: schema inference has no case for
// futures, and a typed kernel taking one aborts the process at load time.
void wrap_future_boxed(const c10::OperatorHandle& op, torch::jit::Stack* stack);

} // namespace torch_ext::ops
