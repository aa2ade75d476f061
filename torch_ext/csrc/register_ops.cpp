// The project's only TORCH_LIBRARY: schemas and bindings, no logic.
#include <torch/library.h>

#include "wrap_future_op.h"

TORCH_LIBRARY(torch_ext, m) {
  m.def(
      "wrap_future(Future(t) original_result) -> Future(NoneType)",
      torch::CppFunction::makeFromBoxedFunction<
          &torch_ext::ops::wrap_future_boxed>());
}
