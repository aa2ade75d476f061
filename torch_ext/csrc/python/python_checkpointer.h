#pragma once

#include <pybind11/pybind11.h>

namespace torch_ext::python {

// Defines on torch_ext._C the checkpoint functions that take or give Python
// state dicts: _save and _load (of torch.classes.torch_ext.AsyncCheckpointer),
// save and load (one file).
void bind_checkpointer(pybind11::module& module);

} // namespace torch_ext::python
