// torch_ext._C: links libtorch_ext (which registers the ops) into the Python
// process, teaches wrap_future Python's way of storing failures, and binds
// the Python side of AsyncCheckpointer.save.
#include <Python.h>
#include <pybind11/pybind11.h>

#include <torch_ext/future_utils.h>

#include "python_checkpointer.h"

namespace {

// torch.futures.Future.set_exception stores the exception object as the
// future's value (and tells only the Python wrapper to raise it), so c10 sees
// a successful future. An exception instance held as a value is read as the
// failure it stands for, and re-raised as that very object.
std::exception_ptr python_exception_in_value(const c10::IValue& value) {
  pybind11::gil_scoped_acquire gil;
  PyObject* object = value.toPyObject();
  if (!PyExceptionInstance_Check(object)) {
    return nullptr;
  }
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(object)), object);
  return std::make_exception_ptr(pybind11::error_already_set());
}

} // namespace

PYBIND11_MODULE(_C, module) {
  torch_ext::set_error_from_value_hook(&python_exception_in_value);
  torch_ext::python::bind_checkpointer(module);
}
