#include "python_future_utils.h"

#include <Python.h>
#include <torch/csrc/jit/python/pybind_utils.h>

#include <exception>
#include <memory>
#include <string>

#include <torch_ext/future_utils.h>

namespace torch_ext::python {
namespace {

// The failure a Python exception object stands for. Unlike
// pybind11::error_already_set, which may be restored only once (the second
// time terminates the process), it is raised again, as that very object, by
// every wait on every future that holds it.
class PythonException : public std::exception {
 public:
  // Requires the GIL.
  explicit PythonException(pybind11::handle error)
      : error_(error.inc_ref().ptr(), &release_with_gil),
        message_(
            pybind11::str(pybind11::type::handle_of(error).attr("__name__")).cast<std::string>() +
            ": " + pybind11::str(error).cast<std::string>()) {}

  const char* what() const noexcept override {
    return message_.c_str();
  }

  // Requires the GIL.
  void restore() const {
    PyErr_SetObject(
        reinterpret_cast<PyObject*>(Py_TYPE(error_.get())), error_.get());
  }

 private:
  // The last owner may be any thread, with or without the GIL.
  static void release_with_gil(PyObject* error) {
    if (Py_IsInitialized()) {
      pybind11::gil_scoped_acquire gil;
      Py_DECREF(error);
    } // else the interpreter is gone, and the object with it
  }

  std::shared_ptr<PyObject> error_;
  std::string message_;
};

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
  return std::make_exception_ptr(PythonException(object));
}

} // namespace

void bind_future_utils(pybind11::module& module) {
  set_error_from_value_hook(&python_exception_in_value);
  pybind11::register_exception_translator([](std::exception_ptr error) {
    try {
      std::rethrow_exception(error);
    } catch (const PythonException& e) {
      e.restore();
    }
  });
  // torch.ops.torch_ext.wrap_future for torch._C.Future, without the
  // dispatcher's argument parsing and GIL release, which cost more than the
  // wrap itself. Holding the GIL here is safe: c10 never takes the GIL while
  // it holds a future's lock.
  using torch::jit::PythonFutureWrapper;
  module.def(
      "wrap_future",
      [](const PythonFutureWrapper& original_result) {
        return std::make_shared<PythonFutureWrapper>(
            wrap_future(original_result.fut));
      },
      pybind11::arg("original_result"));
}

} // namespace torch_ext::python
