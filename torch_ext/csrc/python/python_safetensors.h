#pragma once

#include <pybind11/pybind11.h>

namespace torch_ext::python {

// Defines on torch_ext._C the safetensors readers and writers
// (<torch_ext/safetensors.h>), which torch_ext/safetensors.py wraps.
void bind_safetensors(pybind11::module& module);

} // namespace torch_ext::python
