#include "python_format.h"

#include <string>

#include "torch_ext/csrc/format/detect_format.h"

namespace torch_ext::python {

namespace py = pybind11;
using detail::DiskFormat;

void bind_format(py::module& module) {
  py::enum_<DiskFormat>(module, "DiskFormat")
      .value("TorchSave", DiskFormat::TorchSave)
      .value("Dcp", DiskFormat::Dcp)
      .value("Safetensors", DiskFormat::Safetensors)
      .value("SafetensorsFolder", DiskFormat::SafetensorsFolder)
      .value("ManagerRoot", DiskFormat::ManagerRoot);
  module.def("detect_format", &detail::detect_format, py::arg("path"), py::call_guard<py::gil_scoped_release>());
  module.def("describe_format", &detail::describe_format, py::arg("format"));
}

} // namespace torch_ext::python
