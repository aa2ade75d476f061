// read_metadata: `.metadata` through the project's pickle machine, with
// DCP's metadata classes as the set of globals it may name, then checked.
#include <torch_ext/dcp.h>

#include <array>
#include <filesystem>
#include <map>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/io/mapped_file.h"
#include "torch_ext/csrc/pickle/dtypes.h"
#include "torch_ext/csrc/pickle/unpickler.h"
#include "torch_ext/csrc/state/state_value.h"

#include "metadata_check.h"

namespace torch_ext::dcp {
namespace {

using detail::Made;
using detail::PickleContext;
using detail::PickleItem;
using detail::PickleObject;
using detail::PickleShape;
using detail::PickleTuple;

// What `.metadata` may name: DCP's dataclasses, and what their fields hold.
enum class Kind : uint8_t {
  // Classes made by NEWOBJ and filled by BUILD.
  Metadata,
  TensorStorageMetadata,
  BytesStorageMetadata,
  ChunkStorageMetadata,
  TensorProperties,
  MetadataIndex,
  StorageMeta,
  StorageInfo,
  // Called by REDUCE.
  MemFormatEncoding, // the enum _MEM_FORMAT_ENCODING(value)
  GetLayout, // torch.serialization._get_layout('torch.strided')
  Size,
  PosixPath,
  // Named only.
  Dtype,
};

struct ClassInfo {
  std::string_view name;
  std::vector<std::string_view> fields; // a BUILD state's keys, or TensorProperties' tuple
};

const ClassInfo& class_info(Kind kind) {
  static const std::array<ClassInfo, 10> kClasses{{
      {"Metadata", {"state_dict_metadata", "planner_data", "storage_data", "storage_meta", "version"}},
      {"TensorStorageMetadata", {"properties", "size", "chunks"}},
      {"BytesStorageMetadata", {}},
      {"ChunkStorageMetadata", {"offsets", "sizes"}},
      {"TensorProperties", {"dtype", "layout", "requires_grad", "memory_format", "pin_memory"}},
      {"MetadataIndex", {"fqn", "offset", "index"}},
      {"StorageMeta", {"checkpoint_id", "save_id", "load_id", "modules"}},
      {"_StorageInfo", {"relative_path", "offset", "length", "transform_descriptors"}},
      {"_MEM_FORMAT_ENCODING", {"value"}},
      {"layout", {"name"}},
  }};
  TORCH_INTERNAL_ASSERT(static_cast<size_t>(kind) < kClasses.size(), "no ClassInfo for a global that is no class");
  return kClasses[static_cast<size_t>(kind)];
}

struct DcpGlobal final : PickleObject {
  DcpGlobal(Kind kind, std::optional<c10::ScalarType> dtype) : kind(kind), dtype(dtype) {}
  Kind kind;
  std::optional<c10::ScalarType> dtype;
};

// DCP's objects are values to the machine (they go into dicts and lists, a
// MetadataIndex keys a dict, and c10 dicts hash only scalars and tensors):
// each is a str token that names it here, where its fields are kept. A
// token starts with the byte 0xFF, which no str of a pickle (valid UTF-8)
// holds, so that no value of the file passes for an object.
bool is_token(const c10::IValue& value) {
  return value.isString() && !value.toStringRef().empty() && value.toStringRef()[0] == '\xff';
}

class DcpGlobals final : public detail::PickleGlobals {
 public:
  std::shared_ptr<const PickleObject> global(const PickleContext& context, const std::string& module, const std::string& name)
      override {
    const auto make = [](Kind kind, std::optional<c10::ScalarType> dtype = std::nullopt) {
      return std::make_shared<const DcpGlobal>(kind, dtype);
    };
    if (module == "torch.distributed.checkpoint.metadata") {
      for (const Kind kind :
           {Kind::Metadata,
            Kind::TensorStorageMetadata,
            Kind::BytesStorageMetadata,
            Kind::ChunkStorageMetadata,
            Kind::TensorProperties,
            Kind::MetadataIndex,
            Kind::StorageMeta,
            Kind::MemFormatEncoding}) {
        if (name == class_info(kind).name) {
          return make(kind);
        }
      }
    } else if (module == "torch.distributed.checkpoint.filesystem" && name == "_StorageInfo") {
      return make(Kind::StorageInfo);
    } else if (module == "torch.serialization" && name == "_get_layout") {
      return make(Kind::GetLayout);
    } else if ((module == "pathlib" || module == "pathlib._local") && name == "PosixPath") {
      return make(Kind::PosixPath);
    } else if (module == "torch" && name == "Size") {
      return make(Kind::Size);
    } else if (module == "torch") {
      if (const auto dtype = detail::dtype_from_python_name(name)) {
        return make(Kind::Dtype, dtype);
      }
    }
    context.fail(
        "its pickle names the global '" + module + "." + name +
        "', which DCP's metadata may not hold; reading runs no code, and allows only the classes of "
        "torch.distributed.checkpoint.metadata and filesystem._StorageInfo, torch.Size, dtypes, "
        "torch.serialization._get_layout and pathlib.PosixPath");
  }

  Made new_object(const PickleContext& context, const PickleObject& cls, const std::vector<PickleItem>& arguments)
      override {
    const auto* named = dynamic_cast<const DcpGlobal*>(&cls);
    context.expect(
        named != nullptr && named->kind <= Kind::StorageInfo, "NEWOBJ of what is not a class of DCP's metadata");
    context.expect(arguments.empty(), "NEWOBJ of a DCP metadata class with arguments");
    return make_object(named->kind, {});
  }

  Made reduce(const PickleContext& context, const PickleObject& callable, const std::vector<PickleItem>& arguments)
      override {
    const auto* named = dynamic_cast<const DcpGlobal*>(&callable);
    context.expect(named != nullptr, "REDUCE of a value that is no function or class");
    const auto value_argument = [&](bool (c10::IValue::*test)() const, const char* what) {
      context.expect(
          arguments.size() == 1 && arguments[0].is_value() && (arguments[0].value.*test)(), what);
      return arguments[0].value;
    };
    switch (named->kind) {
      case Kind::MemFormatEncoding: {
        const c10::IValue value = value_argument(&c10::IValue::isInt, "_MEM_FORMAT_ENCODING() of no int");
        context.expect(value.toInt() >= 0 && value.toInt() <= 2, "_MEM_FORMAT_ENCODING() of an unknown value");
        return make_object(Kind::MemFormatEncoding, {value});
      }
      case Kind::GetLayout:
        return make_object(Kind::GetLayout, {value_argument(&c10::IValue::isString, "_get_layout() of no str")});
      case Kind::Size: {
        const c10::IValue sizes = value_argument(&c10::IValue::isTuple, "torch.Size() without a tuple");
        const auto& items = sizes.toTupleRef().elements();
        context.expect(
            std::all_of(items.begin(), items.end(), [](const c10::IValue& item) { return item.isInt(); }),
            "torch.Size() of a value that is no int");
        c10::IValue tuple(c10::ivalue::Tuple::create(std::vector<c10::IValue>(items.begin(), items.end())));
        detail::mark_size(tuple);
        return Made{PickleItem{std::move(tuple), nullptr}, PickleShape{1, 1 + items.size()}};
      }
      case Kind::PosixPath: {
        // PurePath(*parts), as Python 3.11 and 3.12 pickle it (3.13: one str).
        std::string path;
        for (const PickleItem& part : arguments) {
          context.expect(part.is_value() && part.value.isString(), "a PosixPath of a part that is no str");
          const std::string& text = part.value.toStringRef();
          if (!text.empty() && text.front() == '/') {
            path = text;
          } else if (!text.empty()) {
            path += (path.empty() || path.back() == '/' ? "" : "/") + text;
          }
        }
        return Made{PickleItem{c10::IValue(path.empty() ? std::string(".") : path), nullptr}, PickleShape{}};
      }
      case Kind::Dtype: // a global that class_info() does not list
        context.malformed("REDUCE of a torch dtype, which DCP's metadata names only");
      default:
        context.malformed(
            "REDUCE of '" + std::string(class_info(named->kind).name) + "', which DCP's metadata makes with NEWOBJ");
    }
  }

  void build(const PickleContext& context, const PickleItem& target, const PickleItem& state) override {
    Object* object = target.is_value() ? find(target.value) : nullptr;
    context.expect(object != nullptr && object->kind <= Kind::StorageInfo, "BUILD on what is no DCP metadata object");
    context.expect(!object->built, "a second BUILD of one DCP metadata object");
    object->built = true;
    const ClassInfo& info = class_info(object->kind);
    std::vector<c10::IValue>& fields = object->fields;
    if (object->kind == Kind::TensorProperties) {
      // __setstate__ of a 5-tuple; its dtype is a global, so it is no value.
      const auto* tuple = state.as<PickleTuple>();
      context.expect(tuple != nullptr && tuple->items.size() == 5, "a TensorProperties state that is no 5-tuple of a dtype and 4 values");
      const auto* dtype = tuple->items[0].as<DcpGlobal>();
      context.expect(dtype != nullptr && dtype->kind == Kind::Dtype, "a TensorProperties whose dtype is no torch dtype");
      fields[1] = c10::IValue(static_cast<int64_t>(*dtype->dtype));
      for (size_t i = 1; i < 5; ++i) {
        context.expect(tuple->items[i].is_value(), "a TensorProperties field that is no value");
        fields[i + 1] = tuple->items[i].value;
      }
      object->set = (1u << 5) - 1;
      return;
    }
    context.expect(
        state.is_value() && state.value.isGenericDict(), "the state of a DCP metadata object that is no dict");
    for (const auto& entry : state.value.toGenericDict()) {
      context.expect(entry.key().isString(), "a DCP metadata field whose name is no str");
      const std::string& name = entry.key().toStringRef();
      const auto field = std::find(info.fields.begin(), info.fields.end(), name);
      if (field == info.fields.end()) {
        context.malformed(
            "a field '" + name + "' of " + std::string(info.name) + ", which torch 2.13's DCP metadata has not");
      }
      const auto slot = static_cast<size_t>(field - info.fields.begin());
      fields[slot + 1] = entry.value();
      object->set |= 1u << slot;
    }
  }

  // Objects are str tokens already, so every key is its own stand-in.
  c10::IValue dict_key(const PickleContext& context, const c10::IValue& key) override {
    const Object* object = find(key);
    // A MetadataIndex is complete (and changes no more) before it keys a dict.
    if (!key.isString() || (is_token(key) && (object == nullptr || object->kind != Kind::MetadataIndex || !object->built))) {
      context.malformed(
          std::string("a dict key of type ") + key.tagKind() + "; DCP's metadata is keyed by str and MetadataIndex");
    }
    return key;
  }

  struct Object {
    Kind kind;
    std::vector<c10::IValue> fields; // the class's name, then its fields
    uint32_t set = 0; // the fields BUILD set
    bool built = false;
  };

  // The object `value` is, if this set made it.
  Object* find(const c10::IValue& value) {
    if (!is_token(value)) {
      return nullptr;
    }
    const auto found = objects_.find(value.toStringRef());
    return found == objects_.end() ? nullptr : &found->second;
  }

 private:
  Made make_object(Kind kind, std::vector<c10::IValue> fields) {
    const ClassInfo& info = class_info(kind);
    std::vector<c10::IValue> items{c10::IValue(std::string(info.name))};
    const bool given = !fields.empty();
    items.insert(items.end(), fields.begin(), fields.end());
    items.resize(info.fields.size() + 1);
    std::string token = "\xff" + std::to_string(objects_.size());
    objects_.emplace(token, Object{kind, std::move(items), given ? 1u : 0u, given});
    return Made{PickleItem{c10::IValue(std::move(token)), nullptr}, PickleShape{1, 1 + info.fields.size()}};
  }

  std::unordered_map<std::string, Object> objects_;
};

// Turns the unpickled objects into the Metadata model, checking each type.
class Converter {
 public:
  Converter(DcpGlobals& globals, std::string folder) : globals_(globals), folder_(std::move(folder)) {}

  Metadata metadata(const c10::IValue& root) {
    const auto& fields = object(root, Kind::Metadata, "the pickled value");
    Metadata metadata;
    require(root, 0, "Metadata");
    for (const auto& entry : dict(fields[1], "state_dict_metadata")) {
      const std::string& fqn = string(entry.key(), "a state_dict_metadata key");
      metadata.state_dict_metadata.emplace_back(fqn, storage_entry(entry.value(), fqn));
    }
    if (!fields[2].isNone()) {
      metadata.planner_data.emplace();
      for (const auto& entry : dict(fields[2], "planner_data")) {
        const std::string& fqn = string(entry.key(), "a planner_data key");
        expect(entry.value().isTuple(), "the planner_data of '" + fqn + "' is no tuple");
        ObjectPath path;
        for (const c10::IValue& step : entry.value().toTupleRef().elements()) {
          expect(
              (step.isString() && !is_token(step)) || step.isInt(),
              "the planner_data of '" + fqn + "' holds what is no str or int");
          path.push_back(step.isString() ? PathItem(step.toStringRef()) : PathItem(step.toInt()));
        }
        metadata.planner_data->emplace_back(fqn, std::move(path));
      }
    }
    // Python's dict keeps one value per MetadataIndex (equal by fqn and
    // offset): the last, at the place of the first.
    std::map<std::pair<std::string, std::optional<std::vector<int64_t>>>, size_t> positions;
    if (!fields[3].isNone()) {
      for (const auto& entry : dict(fields[3], "storage_data")) {
        ItemIndex index = item_index(entry.key());
        ItemLocation location = item_location(entry.value(), index.fqn);
        const auto [position, added] =
            positions.emplace(std::make_pair(index.fqn, index.offset), metadata.storage_data.size());
        if (added) {
          metadata.storage_data.emplace_back(std::move(index), std::move(location));
        } else {
          metadata.storage_data[position->second].second = std::move(location);
        }
      }
    }
    if (!fields[4].isNone()) {
      metadata.storage_meta = storage_meta(fields[4]);
    }
    metadata.version = optional_string(fields[5], "version");
    return metadata;
  }

 private:
  Entry storage_entry(const c10::IValue& value, const std::string& fqn) {
    const DcpGlobals::Object* found = globals_.find(value);
    if (found != nullptr && found->kind == Kind::BytesStorageMetadata) {
      return BytesEntry{};
    }
    const auto& fields = object(value, Kind::TensorStorageMetadata, "the entry of '" + fqn + "'");
    for (size_t slot = 0; slot < 3; ++slot) {
      require(value, slot, "TensorStorageMetadata of '" + fqn + "'");
    }
    TensorEntry entry;
    const auto& properties = object(fields[1], Kind::TensorProperties, "the properties of '" + fqn + "'");
    require(fields[1], 0, "the properties of '" + fqn + "'");
    entry.dtype = static_cast<c10::ScalarType>(properties[1].toInt());
    const auto& layout = object(properties[2], Kind::GetLayout, "the layout of '" + fqn + "'");
    expect(
        layout[1].isString() && layout[1].toStringRef() == "torch.strided",
        "the layout of '" + fqn + "' is not torch.strided");
    expect(properties[3].isBool() && properties[5].isBool(), "the properties of '" + fqn + "' hold flags that are no bool");
    entry.requires_grad = properties[3].toBool();
    entry.pin_memory = properties[5].toBool();
    entry.memory_format = object(properties[4], Kind::MemFormatEncoding, "the memory format of '" + fqn + "'")[1].toInt();
    entry.size = ints(fields[2], "the size of '" + fqn + "'");
    for (const c10::IValue& chunk : list(fields[3], "the chunks of '" + fqn + "'")) {
      const auto& chunk_fields = object(chunk, Kind::ChunkStorageMetadata, "a chunk of '" + fqn + "'");
      require(chunk, 0, "a chunk of '" + fqn + "'");
      require(chunk, 1, "a chunk of '" + fqn + "'");
      entry.chunks.push_back(
          Chunk{ints(chunk_fields[1], "the offsets of a chunk of '" + fqn + "'"),
                ints(chunk_fields[2], "the sizes of a chunk of '" + fqn + "'")});
    }
    return entry;
  }

  ItemIndex item_index(const c10::IValue& value) {
    const auto& fields = object(value, Kind::MetadataIndex, "a storage_data key");
    require(value, 0, "MetadataIndex");
    ItemIndex index;
    index.fqn = string(fields[1], "the fqn of a MetadataIndex");
    if (!fields[2].isNone()) {
      index.offset = ints(fields[2], "the offset of the MetadataIndex of '" + index.fqn + "'");
    }
    if (!fields[3].isNone()) {
      expect(fields[3].isInt(), "the index of the MetadataIndex of '" + index.fqn + "' is no int");
      index.index = fields[3].toInt();
    }
    return index;
  }

  ItemLocation item_location(const c10::IValue& value, const std::string& fqn) {
    const std::string what = "the _StorageInfo of '" + fqn + "'";
    const auto& fields = object(value, Kind::StorageInfo, what);
    for (size_t slot = 0; slot < 3; ++slot) {
      require(value, slot, what);
    }
    ItemLocation location;
    location.relative_path = string(fields[1], what + " (relative_path)");
    expect(fields[2].isInt() && fields[2].toInt() >= 0 && fields[3].isInt() && fields[3].toInt() >= 0, what + " holds an offset or length that is no int >= 0");
    location.offset = static_cast<uint64_t>(fields[2].toInt());
    location.length = static_cast<uint64_t>(fields[3].toInt());
    if (!fields[4].isNone()) {
      for (const c10::IValue& descriptor : list(fields[4], what + " (transform_descriptors)")) {
        location.transform_descriptors.push_back(string(descriptor, what + " (a transform descriptor)"));
      }
    }
    return location;
  }

  StorageMeta storage_meta(const c10::IValue& value) {
    const auto& fields = object(value, Kind::StorageMeta, "the storage_meta");
    StorageMeta meta;
    meta.checkpoint_id = optional_string(fields[1], "the checkpoint_id");
    meta.save_id = optional_string(fields[2], "the save_id");
    meta.load_id = optional_string(fields[3], "the load_id");
    if (!fields[4].isNone()) {
      for (const c10::IValue& module : list(fields[4], "the modules")) {
        meta.modules.push_back(string(module, "a module of the storage_meta"));
      }
    }
    return meta;
  }

  const std::vector<c10::IValue>& object(const c10::IValue& value, Kind kind, const std::string& what) {
    const DcpGlobals::Object* found = globals_.find(value);
    expect(
        found != nullptr && found->kind == kind,
        what + " is no " + std::string(class_info(kind).name) + " (" +
            (found ? "another DCP class" : std::string("a ") + value.tagKind()) + ")");
    return found->fields;
  }

  // A field without a default must have been set by BUILD.
  void require(const c10::IValue& object, size_t slot, const std::string& what) {
    const DcpGlobals::Object* found = globals_.find(object);
    expect(
        (found->set >> slot) & 1u,
        what + " has no field '" + std::string(class_info(found->kind).fields[slot]) + "'");
  }

  c10::impl::GenericDict dict(const c10::IValue& value, const std::string& what) {
    expect(value.isGenericDict(), what + " is no dict");
    return value.toGenericDict();
  }

  c10::ArrayRef<c10::IValue> list(const c10::IValue& value, const std::string& what) {
    expect(value.isList(), what + " is no list");
    return value.toListRef();
  }

  const std::string& string(const c10::IValue& value, const std::string& what) {
    expect(value.isString() && !is_token(value), what + " is no str");
    return value.toStringRef();
  }

  std::optional<std::string> optional_string(const c10::IValue& value, const std::string& what) {
    if (value.isNone()) {
      return std::nullopt;
    }
    return string(value, what);
  }

  std::vector<int64_t> ints(const c10::IValue& value, const std::string& what) {
    expect(value.isTuple(), what + " is no torch.Size");
    std::vector<int64_t> result;
    for (const c10::IValue& item : value.toTupleRef().elements()) {
      expect(item.isInt(), what + " holds what is no int");
      result.push_back(item.toInt());
    }
    return result;
  }

  void expect(bool condition, const std::string& what) {
    TORCH_CHECK(condition, "the DCP checkpoint '", folder_, "' has a .metadata that is not DCP's: ", what);
  }

  DcpGlobals& globals_;
  std::string folder_;
};

} // namespace

Metadata read_metadata(const std::string& folder) {
  const std::string path = (std::filesystem::path(folder) / kMetadataFileName).string();
  const auto file = detail::MappedFile::open(path);
  DcpGlobals globals;
  const c10::IValue root = detail::unpickle(
      std::string_view(reinterpret_cast<const char*>(file->data()), file->size()),
      globals,
      [&path](const std::string& what) { TORCH_CHECK(false, "cannot read the DCP metadata '", path, "': ", what); });
  Metadata metadata = Converter(globals, folder).metadata(root);
  detail::dcp::check_metadata(metadata, folder);
  return metadata;
}

} // namespace torch_ext::dcp
