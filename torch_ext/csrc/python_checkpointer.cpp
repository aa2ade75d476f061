// torch_ext._C._save: AsyncCheckpointer.save from Python with any nesting.
// Python arguments to a TorchScript method go through type inference, which
// refuses a nested dict whose values differ in type (tensors beside ints or
// lists, as in every state dict); this builds Dict(str, Any) values itself.
#include "python_checkpointer.h"

#include <torch/csrc/jit/python/pybind_utils.h>

namespace torch_ext::python {
namespace {

namespace py = pybind11;

c10::IValue to_state_value(py::handle value, const std::string& where) {
  if (PyDict_Check(value.ptr())) {
    c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
    for (const auto& item : py::reinterpret_borrow<py::dict>(value)) {
      if (!PyUnicode_Check(item.first.ptr())) {
        throw py::type_error(
            "state_dict keys must be strings, got a key of type " +
            std::string(Py_TYPE(item.first.ptr())->tp_name) +
            (where.empty() ? "" : " in '" + where + "'"));
      }
      const auto key = item.first.cast<std::string>();
      dict.insert(key, to_state_value(item.second, where.empty() ? key : where + "." + key));
    }
    return dict;
  }
  if (PyList_Check(value.ptr())) {
    c10::impl::GenericList list(c10::AnyType::get());
    size_t index = 0;
    for (const auto& item : py::reinterpret_borrow<py::list>(value)) {
      list.push_back(to_state_value(item, where + "[" + std::to_string(index++) + "]"));
    }
    return list;
  }
  try {
    return torch::jit::toIValue(value, c10::AnyType::get());
  } catch (const std::exception& e) {
    throw py::type_error(
        "state_dict entry '" + where + "' of type " +
        std::string(Py_TYPE(value.ptr())->tp_name) +
        " cannot be saved: " + e.what());
  }
}

py::object save(
    torch::jit::Object checkpointer,
    const std::string& path,
    const py::dict& state_dict) {
  c10::IValue state = to_state_value(state_dict, "");
  c10::IValue futures;
  {
    // save() waits for the previous write, whose Python callbacks need the GIL.
    py::gil_scoped_release no_gil;
    futures = checkpointer.run_method("save", path, std::move(state));
  }
  return torch::jit::toPyObject(std::move(futures));
}

} // namespace

void bind_checkpointer(pybind11::module& module) {
  module.def("_save", &save, py::arg("checkpointer"), py::arg("path"), py::arg("state_dict"));
}

} // namespace torch_ext::python
