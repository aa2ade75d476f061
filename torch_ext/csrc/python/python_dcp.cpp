#include "python_dcp.h"

#include <optional>
#include <string>
#include <vector>

#include <torch_ext/dcp.h>

#include "python_state.h"

namespace torch_ext::python {
namespace {

namespace py = pybind11;

void save_dcp(py::handle state_dict, const std::string& path, int64_t thread_count, bool compress) {
  const c10::IValue state = to_state(state_dict);
  py::gil_scoped_release no_gil;
  write_dcp_checkpoint(path, state, DcpWriteOptions{thread_count, compress});
}

py::object load_dcp(const std::string& path, bool verify, std::optional<std::vector<std::string>> keys) {
  c10::IValue state;
  {
    py::gil_scoped_release no_gil;
    state = read_dcp_checkpoint(path, ReadOptions{verify, std::move(keys).value_or(std::vector<std::string>{})});
  }
  return from_state(state);
}

} // namespace

void bind_dcp(py::module& module) {
  const DcpWriteOptions defaults;
  module.def(
      "save_dcp",
      &save_dcp,
      py::arg("state_dict"),
      py::arg("path"),
      py::arg("thread_count") = defaults.thread_count,
      py::arg("compress") = defaults.compress);
  module.def("load_dcp", &load_dcp, py::arg("path"), py::arg("verify") = true, py::arg("keys") = py::none());
}

} // namespace torch_ext::python
