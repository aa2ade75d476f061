#pragma once

#include <pybind11/pybind11.h>

namespace torch_ext::python {

// Defines torch_ext._C._CheckpointManager, the C++ CheckpointManager over
// Python state dicts (python_state.h) and torch.distributed stores, with
// CheckpointManagerOptions' defaults.
void bind_checkpoint_manager(pybind11::module& module);

} // namespace torch_ext::python
