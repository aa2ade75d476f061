#pragma once

#include <ATen/core/ivalue.h>
#include <pybind11/pybind11.h>

#include <string>

namespace torch_ext::python {

// A Python state dict as the values a checkpoint holds, with the same rules
// (value_kind) and the same TypeError, naming the entry, for anything else:
// a dict stays a dict, an OrderedDict an OrderedDict with its attributes
// (_metadata), a tuple a tuple, torch.Size a torch.Size. Tensors are shared,
// not copied; an nn.Parameter is taken as its tensor. Needs the GIL.
c10::IValue to_state(pybind11::handle value);

// The inverse: Python objects of the same types. Tensors that share a
// storage share it in Python too. Needs the GIL.
pybind11::object from_state(const c10::IValue& value);

// The name of `value`'s Python type, for errors.
std::string type_name(pybind11::handle value);

} // namespace torch_ext::python
