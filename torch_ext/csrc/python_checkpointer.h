#pragma once

#include <pybind11/pybind11.h>

namespace torch_ext::python {

// Defines _save(checkpointer, path, state_dict) on torch_ext._C.
void bind_checkpointer(pybind11::module& module);

} // namespace torch_ext::python
