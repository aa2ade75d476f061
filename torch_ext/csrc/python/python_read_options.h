#pragma once

#include <pybind11/pybind11.h>

#include <torch_ext/checkpoint_file.h>

namespace torch_ext::python {

// ReadOptions from the keywords of Python's loads: `verify`, and `keys`, an
// iterable of key paths (str), or None for everything. Their defaults in the
// bindings are a default ReadOptions'.
ReadOptions read_options(bool verify, pybind11::handle keys);

} // namespace torch_ext::python
