#include "python_dcp.h"

#include <pybind11/stl.h>
#include <torch/csrc/utils/pybind.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <torch_ext/dcp.h>
#include <torch_ext/dcp_sharded.h>

#include "torch_ext/csrc/dcp/flatten.h"

#include "python_state.h"

namespace torch_ext::python {
namespace {

namespace py = pybind11;

void save_dcp(py::handle state_dict, const std::string& path, int64_t thread_count, bool compress) {
  const c10::IValue state = to_state(state_dict);
  py::gil_scoped_release no_gil;
  write_dcp_checkpoint(path, state, DcpWriteOptions{thread_count, compress});
}

void save_sharded(
    py::handle state_dict,
    const std::string& path,
    const py::object& store,
    int64_t rank,
    int64_t world_size,
    double timeout_s,
    int64_t thread_count,
    bool compress,
    int64_t max_chunk_bytes) {
  const c10::IValue state = to_state(state_dict);
  dcp::SaveRanks ranks;
  if (!store.is_none()) {
    ranks.store = store.cast<c10::intrusive_ptr<c10d::Store>>();
  }
  ranks.rank = rank;
  ranks.world_size = world_size;
  ranks.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  py::gil_scoped_release no_gil;
  DcpWriteOptions options;
  options.thread_count = thread_count;
  options.compress = compress;
  options.max_chunk_bytes = max_chunk_bytes;
  dcp::save_sharded(path, state, ranks, options);
}

// Fills the tensors and LocalShards of `into` in place; returns nothing of
// its non-tensor values (load_dcp reads them).
void load_sharded(const std::string& path, py::handle into, bool verify) {
  const c10::IValue target = to_state(into);
  py::gil_scoped_release no_gil;
  dcp::load_sharded(path, target, verify);
}

py::object load_dcp(const std::string& path, bool verify, std::optional<std::vector<std::string>> keys) {
  c10::IValue state;
  {
    py::gil_scoped_release no_gil;
    state = read_dcp_checkpoint(path, ReadOptions{verify, std::move(keys).value_or(std::vector<std::string>{})});
  }
  return from_state(state);
}

py::object load_dcp_entries(const std::string& path, const std::vector<std::string>& fqns, bool verify) {
  c10::IValue entries;
  {
    py::gil_scoped_release no_gil;
    entries = read_dcp_entries(path, fqns, verify);
  }
  return from_state(entries);
}

py::object path_item(const dcp::PathItem& item);

// flatten_state_dict of upstream's _nested_dict.py, the leaves DCP saves:
// [(fqn, object path, value)].
py::list flatten(py::handle state_dict) {
  py::list leaves;
  for (const detail::dcp::FlatEntry& entry : detail::dcp::flatten_state_dict(to_state(state_dict))) {
    py::list path;
    for (const dcp::PathItem& item : entry.path) {
      path.append(path_item(item));
    }
    leaves.append(py::make_tuple(entry.fqn, py::tuple(path), from_state(entry.value)));
  }
  return leaves;
}

py::object path_item(const dcp::PathItem& item) {
  if (const auto* key = std::get_if<std::string>(&item)) {
    return py::str(*key);
  }
  return py::int_(std::get<int64_t>(item));
}

// What `.metadata` says, read as load_dcp reads it, without reading an item:
// {"entries": [(fqn, object path, dtype or None, size or None, chunks,
// stored bytes)], "files": {data file: bytes of its items}, "version",
// "save_id"}.
py::dict dcp_metadata(const std::string& folder) {
  dcp::Metadata metadata;
  {
    py::gil_scoped_release no_gil;
    metadata = dcp::read_metadata(folder);
  }
  std::unordered_map<std::string, const dcp::ObjectPath*> paths;
  if (metadata.planner_data) {
    for (const auto& [fqn, object_path] : *metadata.planner_data) {
      paths.emplace(fqn, &object_path);
    }
  }
  std::unordered_map<std::string, uint64_t> stored;
  std::map<std::string, uint64_t> files;
  for (const auto& [index, location] : metadata.storage_data) {
    stored[index.fqn] += location.length;
    files[location.relative_path] += location.length;
  }
  py::list entries;
  for (const auto& [fqn, entry] : metadata.state_dict_metadata) {
    py::list object_path;
    const auto found = paths.find(fqn);
    if (found == paths.end()) {
      object_path.append(py::str(fqn));
    } else {
      for (const dcp::PathItem& item : *found->second) {
        object_path.append(path_item(item));
      }
    }
    const auto* tensor = std::get_if<dcp::TensorEntry>(&entry);
    entries.append(py::make_tuple(
        fqn,
        py::tuple(object_path),
        tensor != nullptr ? py::cast(tensor->dtype) : py::none(),
        tensor != nullptr ? py::cast(tensor->size) : py::none(),
        tensor != nullptr ? tensor->chunks.size() : 1,
        stored[fqn]));
  }
  py::dict result;
  result["entries"] = entries;
  result["files"] = files;
  result["version"] = metadata.version;
  result["save_id"] = metadata.storage_meta ? metadata.storage_meta->save_id : std::nullopt;
  return result;
}

} // namespace

void bind_dcp(py::module& module) {
  const DcpWriteOptions defaults;
  py::class_<dcp::DcpWriter>(module, "DcpWriter")
      .def(py::init<const std::string&, bool>(), py::arg("path"), py::arg("compress") = defaults.compress)
      .def(
          "write",
          [](dcp::DcpWriter& writer, const dcp::ObjectPath& path, py::handle value) {
            const c10::IValue leaf = to_state(value);
            py::gil_scoped_release no_gil;
            writer.write(path, leaf);
          },
          py::arg("path"),
          py::arg("value"))
      .def("commit", &dcp::DcpWriter::commit, py::call_guard<py::gil_scoped_release>());
  module.def(
      "save_dcp",
      &save_dcp,
      py::arg("state_dict"),
      py::arg("path"),
      py::arg("thread_count") = defaults.thread_count,
      py::arg("compress") = defaults.compress);
  module.def(
      "save_sharded",
      &save_sharded,
      py::arg("state_dict"),
      py::arg("path"),
      py::arg("store"),
      py::arg("rank"),
      py::arg("world_size"),
      py::arg("timeout_s"),
      py::arg("thread_count") = defaults.thread_count,
      py::arg("compress") = defaults.compress,
      py::arg("max_chunk_bytes") = defaults.max_chunk_bytes);
  module.def("load_sharded", &load_sharded, py::arg("path"), py::arg("into"), py::arg("verify") = true);
  module.def("load_dcp", &load_dcp, py::arg("path"), py::arg("verify") = true, py::arg("keys") = py::none());
  module.def("load_dcp_entries", &load_dcp_entries, py::arg("path"), py::arg("fqns"), py::arg("verify") = true);
  module.def("dcp_metadata", &dcp_metadata, py::arg("folder"));
  module.def("flatten_state_dict", &flatten, py::arg("state_dict"));
}

} // namespace torch_ext::python
