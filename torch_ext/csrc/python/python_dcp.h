#pragma once

#include <pybind11/pybind11.h>

namespace torch_ext::python {

// Defines on torch_ext._C the reads and writes of DCP checkpoints that take
// or give Python state dicts: save_dcp and load_dcp.
void bind_dcp(pybind11::module& module);

} // namespace torch_ext::python
