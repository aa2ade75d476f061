// torch_ext._C: links libtorch_ext (which registers the ops) into the Python
// process and teaches wrap_future Python's way of storing failures.
#include <Python.h>
#include <pybind11/pybind11.h>
#include <torch/csrc/jit/python/pybind_utils.h>

#include <torch_ext/future_utils.h>

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
  // torch.ops.torch_ext.wrap_future for torch._C.Future, without the
  // dispatcher's argument parsing and GIL release, which cost more than the
  // wrap itself. Holding the GIL here is safe: c10 never takes the GIL while
  // it holds a future's lock.
  using torch::jit::PythonFutureWrapper;
  module.def(
      "wrap_future",
      [](const PythonFutureWrapper& original_result) {
        return std::make_shared<PythonFutureWrapper>(
            torch_ext::wrap_future(original_result.fut));
      },
      pybind11::arg("original_result"));
}
