#include "python_dcp_metadata.h"

#include <torch/csrc/utils/pybind.h>

#include <string>
#include <vector>

#include "python_state.h"

namespace torch_ext::python {
namespace {

namespace py = pybind11;
namespace dcp = torch_ext::dcp;

// Upstream's classes, looked up once (and kept for the life of the process).
struct MetadataClasses {
  py::handle metadata, tensor_storage, bytes_storage, chunk, properties, index, storage_meta, storage_info;
  py::handle size, path, strided;
  // By _MEM_FORMAT_ENCODING's value.
  py::handle memory_formats[3];

  static const MetadataClasses& get() {
    static const MetadataClasses classes = [] {
      const auto find = [](const char* module, const char* name) {
        return py::object(py::module_::import(module).attr(name)).release();
      };
      constexpr const char* kMetadata = "torch.distributed.checkpoint.metadata";
      return MetadataClasses{
          find(kMetadata, "Metadata"),
          find(kMetadata, "TensorStorageMetadata"),
          find(kMetadata, "BytesStorageMetadata"),
          find(kMetadata, "ChunkStorageMetadata"),
          find(kMetadata, "TensorProperties"),
          find(kMetadata, "MetadataIndex"),
          find(kMetadata, "StorageMeta"),
          find("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
          find("torch", "Size"),
          find("pathlib", "Path"),
          find("torch", "strided"),
          {find("torch", "contiguous_format"), find("torch", "channels_last"), find("torch", "preserve_format")},
      };
    }();
    return classes;
  }
};

bool is_instance(py::handle value, py::handle type) {
  return py::isinstance(value, type);
}

py::object size_of(const std::vector<int64_t>& values) {
  return MetadataClasses::get().size(py::cast(values));
}

template <typename T>
std::optional<T> optional_of(py::handle value) {
  if (value.is_none()) {
    return std::nullopt;
  }
  return value.cast<T>();
}

py::object none_or(const std::optional<std::string>& value) {
  return value ? py::object(py::str(*value)) : py::object(py::none());
}

dcp::TensorEntry tensor_entry_from_python(const std::string& fqn, py::handle storage) {
  const MetadataClasses& classes = MetadataClasses::get();
  const py::object properties = storage.attr("properties");
  const py::object layout = properties.attr("layout");
  TORCH_CHECK_TYPE(
      layout.is(classes.strided),
      "the DCP entry '",
      fqn,
      "' has the layout ",
      std::string(py::str(layout)),
      "; DCP's format holds strided tensors");
  dcp::TensorEntry entry;
  entry.dtype = properties.attr("dtype").cast<at::ScalarType>();
  entry.requires_grad = properties.attr("requires_grad").cast<bool>();
  entry.pin_memory = properties.attr("pin_memory").cast<bool>();
  const py::object memory_format = properties.attr("memory_format");
  entry.memory_format = -1;
  for (int64_t encoding = 0; encoding < 3; ++encoding) {
    if (memory_format.is(classes.memory_formats[encoding])) {
      entry.memory_format = encoding;
    }
  }
  TORCH_CHECK_TYPE(
      entry.memory_format >= 0,
      "the DCP entry '",
      fqn,
      "' has the memory format ",
      std::string(py::str(memory_format)),
      "; TensorProperties holds contiguous_format, channels_last or preserve_format");
  entry.size = ints_from_python(storage.attr("size"));
  for (py::handle chunk : storage.attr("chunks")) {
    entry.chunks.push_back(dcp::Chunk{ints_from_python(chunk.attr("offsets")), ints_from_python(chunk.attr("sizes"))});
  }
  return entry;
}

dcp::ObjectPath object_path_from_python(const std::string& fqn, py::handle path) {
  TORCH_CHECK_TYPE(
      py::isinstance<py::tuple>(path) || py::isinstance<py::list>(path),
      "the planner_data of '",
      fqn,
      "' is a ",
      type_name(path),
      "; torch_ext's DCP writer saves planner_data as DefaultSavePlanner makes it: a path (tuple) per key");
  dcp::ObjectPath object_path;
  for (py::handle step : path) {
    if (py::isinstance<py::str>(step)) {
      object_path.emplace_back(step.cast<std::string>());
    } else if (py::isinstance<py::int_>(step)) {
      object_path.emplace_back(step.cast<int64_t>());
    } else {
      TORCH_CHECK_TYPE(
          false,
          "the planner_data of '",
          fqn,
          "' holds a ",
          type_name(step),
          "; the object paths of DCP's metadata are made of str keys and int indices");
    }
  }
  return object_path;
}

dcp::ItemLocation location_from_python(py::handle info) {
  dcp::ItemLocation location;
  location.relative_path = info.attr("relative_path").cast<std::string>();
  location.offset = info.attr("offset").cast<uint64_t>();
  location.length = info.attr("length").cast<uint64_t>();
  const py::object descriptors = py::getattr(info, "transform_descriptors", py::none());
  if (!descriptors.is_none()) {
    for (py::handle descriptor : descriptors) {
      location.transform_descriptors.push_back(descriptor.cast<std::string>());
    }
  }
  return location;
}

dcp::StorageMeta storage_meta_from_python(py::handle meta) {
  dcp::StorageMeta storage_meta;
  const py::object checkpoint_id = meta.attr("checkpoint_id");
  if (!checkpoint_id.is_none()) {
    storage_meta.checkpoint_id = py::module_::import("os").attr("fspath")(checkpoint_id).cast<std::string>();
  }
  storage_meta.save_id = optional_of<std::string>(meta.attr("save_id"));
  storage_meta.load_id = optional_of<std::string>(meta.attr("load_id"));
  for (py::handle module : meta.attr("modules")) {
    storage_meta.modules.push_back(module.cast<std::string>());
  }
  return storage_meta;
}

} // namespace

dcp::Metadata metadata_from_python(py::handle metadata) {
  const MetadataClasses& classes = MetadataClasses::get();
  TORCH_CHECK_TYPE(
      is_instance(metadata, classes.metadata),
      "expected torch.distributed.checkpoint.metadata.Metadata, got a ",
      type_name(metadata));
  dcp::Metadata result;
  for (const auto& [key, storage] : metadata.attr("state_dict_metadata").cast<py::dict>()) {
    const std::string fqn = key.cast<std::string>();
    if (is_instance(storage, classes.tensor_storage)) {
      result.state_dict_metadata.emplace_back(fqn, tensor_entry_from_python(fqn, storage));
    } else {
      TORCH_CHECK_TYPE(
          is_instance(storage, classes.bytes_storage),
          "the DCP entry '",
          fqn,
          "' is a ",
          type_name(storage),
          "; expected a TensorStorageMetadata or a BytesStorageMetadata");
      result.state_dict_metadata.emplace_back(fqn, dcp::BytesEntry{});
    }
  }
  const py::object planner_data = metadata.attr("planner_data");
  if (!planner_data.is_none()) {
    TORCH_CHECK_TYPE(
        py::isinstance<py::dict>(planner_data),
        "the metadata's planner_data is a ",
        type_name(planner_data),
        "; torch_ext's DCP writer saves planner_data as DefaultSavePlanner makes it: a dict of paths");
    result.planner_data.emplace();
    for (const auto& [key, path] : planner_data.cast<py::dict>()) {
      const std::string fqn = key.cast<std::string>();
      result.planner_data->emplace_back(fqn, object_path_from_python(fqn, path));
    }
  }
  const py::object storage_data = metadata.attr("storage_data");
  if (!storage_data.is_none()) {
    for (const auto& [index, info] : storage_data.cast<py::dict>()) {
      result.storage_data.emplace_back(item_index_from_python(index), location_from_python(info));
    }
  }
  const py::object storage_meta = metadata.attr("storage_meta");
  if (!storage_meta.is_none()) {
    result.storage_meta = storage_meta_from_python(storage_meta);
  }
  result.version = optional_of<std::string>(metadata.attr("version"));
  return result;
}

py::object metadata_to_python(const dcp::Metadata& metadata) {
  const MetadataClasses& classes = MetadataClasses::get();
  py::dict state_dict_metadata;
  for (const auto& [fqn, entry] : metadata.state_dict_metadata) {
    if (const auto* tensor = std::get_if<dcp::TensorEntry>(&entry)) {
      py::list chunks;
      for (const dcp::Chunk& chunk : tensor->chunks) {
        chunks.append(classes.chunk(size_of(chunk.offsets), size_of(chunk.sizes)));
      }
      const py::object properties = classes.properties(
          py::arg("dtype") = tensor->dtype,
          py::arg("layout") = classes.strided,
          py::arg("requires_grad") = tensor->requires_grad,
          py::arg("memory_format") = classes.memory_formats[tensor->memory_format],
          py::arg("pin_memory") = tensor->pin_memory);
      state_dict_metadata[py::str(fqn)] = classes.tensor_storage(properties, size_of(tensor->size), chunks);
    } else {
      state_dict_metadata[py::str(fqn)] = classes.bytes_storage();
    }
  }
  py::object planner_data = py::none();
  if (metadata.planner_data) {
    py::dict paths;
    for (const auto& [fqn, path] : *metadata.planner_data) {
      py::tuple steps(path.size());
      for (size_t i = 0; i < path.size(); ++i) {
        steps[i] = std::visit([](const auto& step) { return py::cast(step); }, path[i]);
      }
      paths[py::str(fqn)] = steps;
    }
    planner_data = paths;
  }
  py::dict storage_data;
  for (const auto& [index, location] : metadata.storage_data) {
    storage_data[item_index_to_python(index)] = location_to_python(location);
  }
  py::object storage_meta = py::none();
  if (metadata.storage_meta) {
    const dcp::StorageMeta& meta = *metadata.storage_meta;
    storage_meta = classes.storage_meta(
        meta.checkpoint_id ? classes.path(*meta.checkpoint_id) : py::object(py::none()),
        none_or(meta.save_id),
        none_or(meta.load_id),
        py::cast(meta.modules));
  }
  return classes.metadata(
      py::arg("state_dict_metadata") = state_dict_metadata,
      py::arg("planner_data") = planner_data,
      py::arg("storage_data") = storage_data,
      py::arg("storage_meta") = storage_meta,
      py::arg("version") = none_or(metadata.version));
}

dcp::ItemIndex item_index_from_python(py::handle index) {
  TORCH_CHECK_TYPE(
      is_instance(index, MetadataClasses::get().index),
      "expected a torch.distributed.checkpoint.metadata.MetadataIndex, got a ",
      type_name(index));
  dcp::ItemIndex result;
  result.fqn = index.attr("fqn").cast<std::string>();
  const py::object offset = index.attr("offset");
  if (!offset.is_none()) {
    result.offset = ints_from_python(offset);
  }
  result.index = optional_of<int64_t>(index.attr("index"));
  return result;
}

py::object item_index_to_python(const dcp::ItemIndex& index) {
  return MetadataClasses::get().index(
      index.fqn,
      index.offset ? size_of(*index.offset) : py::object(py::none()),
      index.index ? py::object(py::int_(*index.index)) : py::object(py::none()));
}

std::vector<int64_t> ints_from_python(py::handle sequence) {
  std::vector<int64_t> values;
  for (py::handle value : sequence) {
    values.push_back(value.cast<int64_t>());
  }
  return values;
}

py::object location_to_python(const dcp::ItemLocation& location) {
  // Left out (None) when there are none, as upstream writes it.
  const py::object descriptors =
      location.transform_descriptors.empty() ? py::object(py::none()) : py::cast(location.transform_descriptors);
  return MetadataClasses::get().storage_info(location.relative_path, location.offset, location.length, descriptors);
}

} // namespace torch_ext::python
