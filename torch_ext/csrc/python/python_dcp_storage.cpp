#include "python_dcp_storage.h"

#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/pybind.h>

#include <string>
#include <vector>

#include <torch_ext/dcp.h>

#include "python_dcp_metadata.h"

namespace torch_ext::python {
namespace {

namespace py = pybind11;
namespace dcp = torch_ext::dcp;

// A tensor whose bytes C++ may read and write without Python: not a
// subclass that computes its values in Python (a DTensor is resolved to
// its local tensor before it gets here).
at::Tensor plain_tensor(py::handle value, const std::string& fqn) {
  TORCH_CHECK_TYPE(
      THPVariable_Check(value.ptr()),
      "the DCP item '",
      fqn,
      "' is a ",
      Py_TYPE(value.ptr())->tp_name,
      "; expected a tensor");
  const at::Tensor& tensor = THPVariable_Unpack(value.ptr());
  TORCH_CHECK_TYPE(
      !tensor.key_set().has(c10::DispatchKey::Python),
      "the DCP item '",
      fqn,
      "' is a ",
      Py_TYPE(value.ptr())->tp_name,
      " that computes its values in Python; expected a plain tensor (the planner resolves DTensors to their "
      "local tensors)");
  return tensor;
}

// `items`: (MetadataIndex, tensor or bytes-like of torch.save's bytes).
py::list write_data_files(
    const std::string& folder,
    int64_t rank,
    const py::list& items,
    int64_t thread_count,
    bool sync) {
  std::vector<dcp::SaveItem> save_items;
  save_items.reserve(items.size());
  for (py::handle item : items) {
    const auto pair = item.cast<py::tuple>();
    dcp::SaveItem save_item{item_index_from_python(pair[0]), {}, std::nullopt};
    const py::object data = pair[1];
    if (THPVariable_Check(data.ptr())) {
      save_item.value = plain_tensor(data, save_item.index.fqn);
    } else {
      const py::buffer_info buffer = py::buffer(data).request();
      save_item.torch_save_bytes.emplace(
          static_cast<const char*>(buffer.ptr), static_cast<size_t>(buffer.size * buffer.itemsize));
    }
    save_items.push_back(std::move(save_item));
  }
  std::vector<dcp::WriteResult> results;
  {
    py::gil_scoped_release no_gil;
    results = dcp::write_data_files(folder, rank, save_items, torch_ext::DcpWriteOptions{thread_count, false, sync});
  }
  const py::object write_result = py::module_::import("torch.distributed.checkpoint.storage").attr("WriteResult");
  py::list written;
  for (const dcp::WriteResult& result : results) {
    written.append(write_result(
        py::arg("index") = item_index_to_python(result.index),
        py::arg("size_in_bytes") = result.location.length,
        py::arg("storage_data") = location_to_python(result.location)));
  }
  return written;
}

void commit_metadata(const std::string& folder, py::handle metadata, bool sync) {
  const dcp::Metadata converted = metadata_from_python(metadata);
  py::gil_scoped_release no_gil;
  dcp::commit_metadata(folder, converted, sync);
}

// `reads`: (MetadataIndex, storage_offsets, lengths, destination tensor).
void read_regions_into(const dcp::CheckpointReader& reader, const py::list& reads) {
  std::vector<dcp::RegionRead> regions;
  regions.reserve(reads.size());
  for (py::handle read : reads) {
    const auto fields = read.cast<py::tuple>();
    dcp::ItemIndex index = item_index_from_python(fields[0]);
    at::Tensor destination = plain_tensor(fields[3], index.fqn);
    regions.push_back(dcp::RegionRead{
        std::move(index), ints_from_python(fields[1]), ints_from_python(fields[2]), std::move(destination)});
  }
  py::gil_scoped_release no_gil;
  reader.read_regions_into(regions);
}

py::bytes read_serialized(const dcp::CheckpointReader& reader, py::handle index) {
  const dcp::ItemIndex item = item_index_from_python(index);
  std::string bytes;
  {
    py::gil_scoped_release no_gil;
    bytes = reader.read_serialized(item);
  }
  return py::bytes(bytes);
}

} // namespace

void bind_dcp_storage(py::module& module) {
  module.attr("DCP_VERSION") = std::string(dcp::kVersion);
  module.def(
      "dcp_check_write_options",
      [](int64_t thread_count) { dcp::check_write_options(torch_ext::DcpWriteOptions{thread_count}); },
      py::arg("thread_count"));
  module.def("dcp_prepare_folder", &dcp::prepare_folder, py::arg("folder"), py::call_guard<py::gil_scoped_release>());
  module.def(
      "dcp_write_data_files",
      &write_data_files,
      py::arg("folder"),
      py::arg("rank"),
      py::arg("items"),
      py::arg("thread_count"),
      py::arg("sync"));
  module.def("dcp_commit_metadata", &commit_metadata, py::arg("folder"), py::arg("metadata"), py::arg("sync"));
  py::class_<dcp::CheckpointReader>(module, "DcpCheckpointReader")
      .def(
          py::init<const std::string&, bool>(),
          py::arg("folder"),
          py::arg("verify"),
          py::call_guard<py::gil_scoped_release>())
      .def("metadata", [](const dcp::CheckpointReader& reader) { return metadata_to_python(reader.metadata()); })
      .def("read_serialized", &read_serialized, py::arg("index"))
      .def("read_regions_into", &read_regions_into, py::arg("reads"));
}

} // namespace torch_ext::python
