// The Python face of the checkpoint functions. Python state dicts are
// converted here (python_state.h) rather than by TorchScript's argument
// conversion, which refuses a dict whose values differ in type and knows no
// OrderedDict, torch.Size or int keys.
#include "python_checkpointer.h"

#include <pybind11/stl.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/jit/python/pybind_utils.h>

#include <string>
#include <utility>
#include <vector>

#include <torch_ext/checkpoint_file.h>

#include "python_read_options.h"
#include "python_state.h"
#include "torch_ext/csrc/async_save/checkpointer_class.h"
#include "torch_ext/csrc/dcp/flatten.h"
#include "torch_ext/csrc/state/select_keys.h"
#include "torch_ext/csrc/torch_save/torch_save_file_writer.h"

namespace torch_ext::python {
namespace {

namespace py = pybind11;

AsyncCheckpointer& checkpointer_of(const torch::jit::Object& script_object) {
  return ops::checkpointer_of(c10::IValue(script_object._ivalue()));
}

py::tuple checkpointer_save(const torch::jit::Object& script_object, const std::string& path, py::handle state_dict) {
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

py::object checkpointer_load(const torch::jit::Object& script_object, const std::string& path, bool verify, py::handle keys) {
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

// The state a TorchSaveFileWriter plans, from its leaves [(object path,
// value)]: nested as read_dcp_checkpoint nests a DCP checkpoint's entries
// (ints as list indices), each meta tensor taken as a planned tensor of its
// dtype and shape, then `keys` selected as ReadOptions::keys selects them.
c10::IValue planned_state(const py::list& leaves, const std::vector<std::string>& keys, const std::string& source) {
  const std::string where = "the checkpoint '" + source + "'";
  detail::dcp::Unflattener state(where, leaves.size());
  for (const py::handle leaf : leaves) {
    const auto [path, value] = leaf.cast<std::pair<dcp::ObjectPath, py::object>>();
    c10::IValue planned;
    if (THPVariable_Check(value.ptr()) && THPVariable_Unpack(value.ptr()).is_meta()) {
      const at::Tensor& placeholder = THPVariable_Unpack(value.ptr());
      planned = detail::planned_tensor(placeholder.scalar_type(), placeholder.sizes());
    } else {
      planned = to_state(value);
    }
    state.set(path, std::move(planned), detail::dcp::key_path(path));
  }
  c10::IValue result = state.take();
  return keys.empty() ? result : detail::select_keys(result, keys, source);
}

} // namespace

void bind_checkpointer(py::module& module) {
  const ReadOptions read_defaults;
  module.def("_save", &checkpointer_save, py::arg("checkpointer"), py::arg("path"), py::arg("state_dict"));
  module.def(
      "_load",
      &checkpointer_load,
      py::arg("checkpointer"),
      py::arg("path"),
      py::kw_only(),
      py::arg("verify") = read_defaults.verify,
      py::arg("keys") = py::none());
  module.def("save", &save_file, py::arg("obj"), py::arg("file"));
  py::class_<detail::TorchSaveFileWriter>(module, "TorchSaveFileWriter")
      .def(
          py::init([](const std::string& file,
                      const py::list& leaves,
                      const std::vector<std::string>& keys,
                      const std::string& source) {
            const c10::IValue state = planned_state(leaves, keys, source);
            py::gil_scoped_release no_gil;
            return std::make_unique<detail::TorchSaveFileWriter>(file, state);
          }),
          py::arg("file"),
          py::arg("leaves"),
          py::arg("keys"),
          py::arg("source"))
      .def_property_readonly("order", &detail::TorchSaveFileWriter::order)
      .def("write", &detail::TorchSaveFileWriter::write, py::arg("tensor"), py::call_guard<py::gil_scoped_release>())
      .def("commit", &detail::TorchSaveFileWriter::commit, py::call_guard<py::gil_scoped_release>());
  module.def(
      "load",
      &load_file,
      py::arg("file"),
      py::kw_only(),
      py::arg("verify") = read_defaults.verify,
      py::arg("keys") = py::none());
}

} // namespace torch_ext::python
