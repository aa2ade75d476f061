#include <iostream>

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>
#include <torch_ext/future_utils.h>

int main() {
  auto source = c10::make_intrusive<c10::ivalue::Future>(c10::TensorType::get());
  auto wrapped = torch_ext::wrap_future(source);

  auto op = c10::Dispatcher::singleton().findSchemaOrThrow("torch_ext::wrap_future", "");
  torch::jit::Stack stack{source};
  op.callBoxed(stack);
  auto through_op = stack.back().toFuture();

  source->markCompleted(torch::ones({2}));
  const bool ok = wrapped->value().isNone() && through_op->value().isNone();
  std::cout << (ok ? "downstream ok" : "downstream FAILED") << std::endl;
  return ok ? 0 : 1;
}
