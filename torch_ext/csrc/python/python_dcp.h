#pragma once

#include <pybind11/pybind11.h>

namespace torch_ext::python {

// Defines on torch_ext._C the reads and writes of DCP checkpoints that take
// or give Python state dicts (save_dcp, load_dcp, and load_dcp_entries: a
// few entries by fqn, flat), and dcp_metadata: what a checkpoint holds, for
// listing it without reading its items.
void bind_dcp(pybind11::module& module);

} // namespace torch_ext::python
