#pragma once

#include <pybind11/pybind11.h>

namespace torch_ext::python {

// Teaches wrap_future Python's way of storing failures, raises them again as
// the very exception objects, and defines wrap_future on torch_ext._C.
void bind_future_utils(pybind11::module& module);

} // namespace torch_ext::python
