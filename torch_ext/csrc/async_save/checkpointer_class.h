#pragma once

#include <ATen/core/ivalue.h>

#include <torch_ext/checkpointer.h>
#include <torch_ext/export.h>

namespace torch_ext::ops {

// The C++ checkpointer of a torch.classes.torch_ext.AsyncCheckpointer, for
// the Python module, which hands its own conversion of state dicts to it.
// The cast happens here, where the class's type information lives.
TORCH_EXT_API AsyncCheckpointer& checkpointer_of(const c10::IValue& script_checkpointer);

} // namespace torch_ext::ops
