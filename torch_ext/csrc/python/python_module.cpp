// torch_ext._C: links libtorch_ext (which registers the ops) into the Python
// process and binds what Python needs beyond the ops.
#include <pybind11/pybind11.h>

#include "python_checkpoint_manager.h"
#include "python_checkpointer.h"
#include "python_dcp.h"
#include "python_dcp_storage.h"
#include "python_format.h"
#include "python_future_utils.h"
#include "python_safetensors.h"

PYBIND11_MODULE(_C, module) {
  torch_ext::python::bind_future_utils(module);
  torch_ext::python::bind_checkpointer(module);
  torch_ext::python::bind_checkpoint_manager(module);
  torch_ext::python::bind_dcp(module);
  torch_ext::python::bind_safetensors(module);
  torch_ext::python::bind_dcp_storage(module);
  torch_ext::python::bind_format(module);
}
