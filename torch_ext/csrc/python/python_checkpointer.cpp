// The Python face of the checkpoint functions. Python state dicts are
// converted here (python_state.h) rather than by TorchScript's argument
// conversion, which refuses a dict whose values differ in type and knows no
// OrderedDict, torch.Size or int keys.
#include "python_checkpointer.h"

#include <torch/csrc/jit/python/pybind_utils.h>

#include <string>
#include <utility>

#include <torch_ext/checkpoint_file.h>

#include "python_read_options.h"
#include "python_state.h"
#include "torch_ext/csrc/async_save/checkpointer_class.h"

namespace torch_ext::python {
namespace {

namespace py = pybind11;

AsyncCheckpointer& checkpointer_of(const torch::jit::Object& script_object) {
  return ops::checkpointer_of(c10::IValue(script_object._ivalue()));
}

py::tuple save(const torch::jit::Object& script_object, const std::string& path, py::handle state_dict) {
  // On the calling thread: an unsupported value raises here, and the
  // checkpointer never sees it.
  const c10::IValue state = to_state(state_dict);
  std::pair<FuturePtr, FuturePtr> futures;
  {
    // save() waits for the previous write, whose Python callbacks need the GIL.
    py::gil_scoped_release no_gil;
    futures = checkpointer_of(script_object).save(path, state);
  }
  return py::make_tuple(
      torch::jit::toPyObject(c10::IValue(std::move(futures.first))),
      torch::jit::toPyObject(c10::IValue(std::move(futures.second))));
}

py::object load(const torch::jit::Object& script_object, const std::string& path, bool verify, py::handle keys) {
  const ReadOptions options = read_options(verify, keys);
  c10::IValue state;
  {
    py::gil_scoped_release no_gil;
    state = checkpointer_of(script_object).load(path, options);
  }
  return from_state(state);
}

void save_file(py::handle state_dict, const std::string& file) {
  const c10::IValue state = to_state(state_dict);
  py::gil_scoped_release no_gil;
  write_checkpoint_file(file, state);
}

py::object load_file(const std::string& file, bool verify, py::handle keys) {
  const ReadOptions options = read_options(verify, keys);
  c10::IValue state;
  {
    py::gil_scoped_release no_gil;
    state = read_checkpoint_file(file, options);
  }
  return from_state(state);
}

} // namespace

void bind_checkpointer(py::module& module) {
  const ReadOptions read_defaults;
  module.def("_save", &save, py::arg("checkpointer"), py::arg("path"), py::arg("state_dict"));
  module.def(
      "_load",
      &load,
      py::arg("checkpointer"),
      py::arg("path"),
      py::kw_only(),
      py::arg("verify") = read_defaults.verify,
      py::arg("keys") = py::none());
  module.def("save", &save_file, py::arg("obj"), py::arg("file"));
  module.def(
      "load",
      &load_file,
      py::arg("file"),
      py::kw_only(),
      py::arg("verify") = read_defaults.verify,
      py::arg("keys") = py::none());
}

} // namespace torch_ext::python
