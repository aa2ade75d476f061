#pragma once

#include <pybind11/pybind11.h>

namespace torch_ext::python {

// Defines on torch_ext._C the rule that tells a path's format from what is
// on disk (DiskFormat, detect_format, describe_format), for the command line.
void bind_format(pybind11::module& module);

} // namespace torch_ext::python
