#pragma once

#include <pybind11/pybind11.h>

namespace torch_ext::python {

// Defines on torch_ext._C what torch_ext.dcp's FileSystemWriter and
// FileSystemReader (StorageWriter and StorageReader of dcp.save and
// dcp.load) call: the C++ layer's data file writer, folder commit and
// checkpoint reader, taking and giving upstream's metadata objects, their
// file work done without the GIL.
void bind_dcp_storage(pybind11::module& module);

} // namespace torch_ext::python
