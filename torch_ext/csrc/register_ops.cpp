// The project's only TORCH_LIBRARY: schemas and bindings, no logic.
#include <torch/library.h>

#include "checkpointer_class.h"
#include "wrap_future_op.h"

TORCH_LIBRARY(torch_ext, m) {
  m.def(
      "wrap_future(Future(t) original_result) -> Future(NoneType)",
      torch::CppFunction::makeFromBoxedFunction<
          &torch_ext::ops::wrap_future_boxed>());

  using torch_ext::ops::ScriptCheckpointer;
  auto checkpointer = m.class_<ScriptCheckpointer>("AsyncCheckpointer");
  checkpointer
      .def(
          torch::init<
              int64_t,
              int64_t,
              int64_t,
              std::optional<std::string>,
              int64_t,
              double>(),
          "",
          {torch::arg("rank") = 0,
           torch::arg("world_size") = 1,
           torch::arg("staging_threads") = 1,
           torch::arg("barrier_host") = std::nullopt,
           torch::arg("barrier_port") = 0,
           torch::arg("barrier_timeout_secs") = 600.0})
      .def("load", &ScriptCheckpointer::load)
      .def("close", &ScriptCheckpointer::close);
  checkpointer._def_unboxed(
      "save",
      torch_ext::ops::checkpointer_save_boxed,
      torch_ext::ops::checkpointer_save_schema());
}
