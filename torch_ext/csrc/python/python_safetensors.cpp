// The Python face of <torch_ext/safetensors.h>. State dicts are converted by
// python_state.h's rules; reads and writes run without the GIL.
#include "python_safetensors.h"

#include <torch/csrc/utils/pybind.h>

#include <optional>
#include <string>
#include <vector>

#include <torch_ext/safetensors.h>

#include "python_state.h"

namespace torch_ext::python {
namespace {

namespace py = pybind11;
using Keys = std::optional<std::vector<std::string>>;
// (name, dtype, shape) as Python gives and takes an entry.
using EntryTuple = std::tuple<std::string, c10::ScalarType, std::vector<int64_t>>;

ReadOptions read_options(bool verify, Keys keys) {
  return ReadOptions{verify, std::move(keys).value_or(std::vector<std::string>{})};
}

std::vector<SafetensorsEntry> entries_of(const std::vector<EntryTuple>& tuples) {
  std::vector<SafetensorsEntry> entries;
  entries.reserve(tuples.size());
  for (const auto& [name, dtype, shape] : tuples) {
    entries.push_back({name, dtype, shape});
  }
  return entries;
}

std::vector<EntryTuple> tuples_of(const std::vector<SafetensorsEntry>& entries) {
  std::vector<EntryTuple> tuples;
  tuples.reserve(entries.size());
  for (const SafetensorsEntry& entry : entries) {
    tuples.emplace_back(entry.name, entry.dtype, entry.shape);
  }
  return tuples;
}

py::dict metadata_dict(const std::vector<std::pair<std::string, std::string>>& metadata) {
  py::dict dict;
  for (const auto& [key, value] : metadata) {
    dict[py::str(key)] = py::str(value);
  }
  return dict;
}

// A reader's load, its tensors converted with the GIL held.
template <typename Reader>
py::object load(const Reader& reader, bool verify, Keys keys) {
  c10::IValue state;
  {
    py::gil_scoped_release no_gil;
    state = reader.load(read_options(verify, std::move(keys)));
  }
  return from_state(state);
}

template <typename Reader>
SafetensorsVerification verify(const Reader& reader) {
  py::gil_scoped_release no_gil;
  return reader.verify();
}

} // namespace

void bind_safetensors(py::module& module) {
  py::class_<SafetensorsTensorInfo>(module, "SafetensorsTensorInfo")
      .def_readonly("name", &SafetensorsTensorInfo::name)
      .def_readonly("dtype", &SafetensorsTensorInfo::dtype)
      .def_readonly("scalar_type", &SafetensorsTensorInfo::scalar_type)
      .def_readonly("shape", &SafetensorsTensorInfo::shape)
      .def_readonly("offset", &SafetensorsTensorInfo::offset)
      .def_readonly("nbytes", &SafetensorsTensorInfo::nbytes)
      .def_readonly("crc32", &SafetensorsTensorInfo::crc32);

  py::class_<SafetensorsVerification::Failure>(module, "SafetensorsFailure")
      .def_readonly("name", &SafetensorsVerification::Failure::name)
      .def_readonly("file", &SafetensorsVerification::Failure::file)
      .def_readonly("expected", &SafetensorsVerification::Failure::expected)
      .def_readonly("actual", &SafetensorsVerification::Failure::actual);
  py::class_<SafetensorsVerification>(module, "SafetensorsVerification")
      .def_readonly("verified", &SafetensorsVerification::verified)
      .def_readonly("unverifiable", &SafetensorsVerification::unverifiable)
      .def_readonly("failed", &SafetensorsVerification::failed)
      .def("ok", &SafetensorsVerification::ok);

  py::class_<SafetensorsFile>(module, "SafetensorsFile")
      .def(py::init<const std::string&>(), py::arg("file"), py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("path", &SafetensorsFile::path)
      .def_property_readonly("tensors", &SafetensorsFile::tensors)
      .def("info", &SafetensorsFile::info, py::arg("name"))
      .def_property_readonly("metadata", [](const SafetensorsFile& file) { return metadata_dict(file.metadata()); })
      .def_property_readonly("unverifiable", &SafetensorsFile::unverifiable)
      .def(
          "tensor",
          &SafetensorsFile::tensor,
          py::arg("name"),
          py::arg("verify") = true,
          py::call_guard<py::gil_scoped_release>())
      .def("load", &load<SafetensorsFile>, py::arg("verify") = true, py::arg("keys") = py::none())
      .def("verify", &verify<SafetensorsFile>);

  py::class_<SafetensorsFolder>(module, "SafetensorsFolder")
      .def(py::init<const std::string&>(), py::arg("folder"), py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("path", &SafetensorsFolder::path)
      .def_property_readonly("shards", &SafetensorsFolder::shards)
      .def_property_readonly("tensors", &SafetensorsFolder::tensors)
      .def("shard_of", &SafetensorsFolder::shard_of, py::arg("name"))
      .def_property_readonly(
          "index_metadata", [](const SafetensorsFolder& folder) { return metadata_dict(folder.index_metadata()); })
      .def_property_readonly("total_size", &SafetensorsFolder::total_size)
      .def(
          "tensor",
          &SafetensorsFolder::tensor,
          py::arg("name"),
          py::arg("verify") = true,
          py::call_guard<py::gil_scoped_release>())
      .def("load", &load<SafetensorsFolder>, py::arg("verify") = true, py::arg("keys") = py::none())
      .def("verify", &verify<SafetensorsFolder>);

  py::class_<SafetensorsWriter>(module, "SafetensorsWriter")
      .def(
          py::init([](const std::string& file, const std::vector<EntryTuple>& entries, SafetensorsMetadata metadata) {
            return SafetensorsWriter(file, entries_of(entries), std::move(metadata));
          }),
          py::arg("file"),
          py::arg("entries"),
          py::arg("metadata"))
      .def_property_readonly("order", [](const SafetensorsWriter& writer) { return tuples_of(writer.order()); })
      .def("write", &SafetensorsWriter::write, py::arg("tensor"), py::call_guard<py::gil_scoped_release>())
      .def("commit", &SafetensorsWriter::commit, py::call_guard<py::gil_scoped_release>());

  py::class_<SafetensorsFolderWriter>(module, "SafetensorsFolderWriter")
      .def(
          py::init([](const std::string& folder,
                      const std::vector<EntryTuple>& entries,
                      uint64_t max_shard_size,
                      SafetensorsMetadata metadata) {
            return SafetensorsFolderWriter(folder, entries_of(entries), max_shard_size, std::move(metadata));
          }),
          py::arg("folder"),
          py::arg("entries"),
          py::arg("max_shard_size"),
          py::arg("metadata"))
      .def_property_readonly("order", [](const SafetensorsFolderWriter& writer) { return tuples_of(writer.order()); })
      .def_property_readonly("shards", &SafetensorsFolderWriter::shards)
      .def("write", &SafetensorsFolderWriter::write, py::arg("tensor"), py::call_guard<py::gil_scoped_release>())
      .def("commit", &SafetensorsFolderWriter::commit, py::call_guard<py::gil_scoped_release>());

  module.def(
      "save_safetensors",
      [](py::handle state_dict, const std::string& file, const SafetensorsMetadata& metadata) {
        const c10::IValue state = to_state(state_dict);
        py::gil_scoped_release no_gil;
        write_safetensors_file(file, state, metadata);
      },
      py::arg("state_dict"),
      py::arg("file"),
      py::arg("metadata"));
  module.def(
      "save_safetensors_folder",
      [](py::handle state_dict, const std::string& folder, uint64_t max_shard_size, const SafetensorsMetadata& metadata) {
        const c10::IValue state = to_state(state_dict);
        py::gil_scoped_release no_gil;
        write_safetensors_folder(folder, state, max_shard_size, metadata);
      },
      py::arg("state_dict"),
      py::arg("folder"),
      py::arg("max_shard_size"),
      py::arg("metadata"));
}

} // namespace torch_ext::python
