// `.metadata` as upstream's FileSystemWriter writes it: pickle protocol 4 of
// DCP's dataclasses, each an object made by NEWOBJ and filled by BUILD with
// its __dict__ (TensorProperties with its __getstate__ tuple), so that
// pickle.load gives the same Metadata.
#include <torch_ext/dcp.h>

#include <utility>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/pickle/dtypes.h"
#include "torch_ext/csrc/pickle/pickle_opcodes.h"
#include "torch_ext/csrc/pickle/pickle_writer.h"

namespace torch_ext::dcp {
namespace {

using namespace detail::pickle;

constexpr const char* kMetadataModule = "torch.distributed.checkpoint.metadata";
constexpr const char* kFilesystemModule = "torch.distributed.checkpoint.filesystem";

class MetadataPickler {
 public:
  std::string run(const Metadata& metadata) {
    object(kMetadataModule, "Metadata", [&] {
      dict_of_fields([&] {
        field("state_dict_metadata");
        dict(metadata.state_dict_metadata, [&](const std::pair<std::string, Entry>& entry) {
          writer_.memo_string(entry.first);
          if (const auto* tensor = std::get_if<TensorEntry>(&entry.second)) {
            tensor_entry(*tensor);
          } else {
            object(kMetadataModule, "BytesStorageMetadata", nullptr);
          }
        });
        field("planner_data");
        if (metadata.planner_data) {
          dict(*metadata.planner_data, [&](const std::pair<std::string, ObjectPath>& entry) {
            writer_.memo_string(entry.first);
            tuple(entry.second.size(), [&](size_t i) {
              if (const auto* key = std::get_if<std::string>(&entry.second[i])) {
                writer_.memo_string(*key);
              } else {
                writer_.integer(std::get<int64_t>(entry.second[i]));
              }
            });
          });
        } else {
          writer_.op(NONE);
        }
        field("storage_data");
        dict(metadata.storage_data, [&](const std::pair<ItemIndex, ItemLocation>& entry) {
          item_index(entry.first);
          item_location(entry.second);
        });
        field("storage_meta");
        if (metadata.storage_meta) {
          storage_meta(*metadata.storage_meta);
        } else {
          writer_.op(NONE);
        }
        field("version");
        optional_string(metadata.version);
      });
    });
    return writer_.finish();
  }

 private:
  void tensor_entry(const TensorEntry& entry) {
    object(kMetadataModule, "TensorStorageMetadata", [&] {
      dict_of_fields([&] {
        field("properties");
        object(kMetadataModule, "TensorProperties", [&] {
          // TensorProperties.__getstate__: (dtype, layout, requires_grad,
          // _MEM_FORMAT_ENCODING, pin_memory).
          writer_.op(MARK);
          const detail::DtypeNames* names = detail::dtype_names(entry.dtype);
          TORCH_CHECK_TYPE(names != nullptr, "DCP metadata cannot record the dtype ", entry.dtype);
          writer_.global("torch", std::string(names->python_name));
          writer_.global("torch.serialization", "_get_layout");
          writer_.memo_string("torch.strided");
          writer_.op(TUPLE1);
          writer_.op(REDUCE);
          writer_.op(entry.requires_grad ? NEWTRUE : NEWFALSE);
          writer_.global(kMetadataModule, "_MEM_FORMAT_ENCODING");
          writer_.integer(entry.memory_format);
          writer_.op(TUPLE1);
          writer_.op(REDUCE);
          writer_.op(entry.pin_memory ? NEWTRUE : NEWFALSE);
          writer_.op(TUPLE);
        });
        field("size");
        size(entry.size);
        field("chunks");
        list(entry.chunks, [&](const Chunk& chunk) {
          object(kMetadataModule, "ChunkStorageMetadata", [&] {
            dict_of_fields([&] {
              field("offsets");
              size(chunk.offsets);
              field("sizes");
              size(chunk.sizes);
            });
          });
        });
      });
    });
  }

  void item_index(const ItemIndex& index) {
    object(kMetadataModule, "MetadataIndex", [&] {
      dict_of_fields([&] {
        field("fqn");
        writer_.memo_string(index.fqn);
        if (index.offset) {
          field("offset");
          size(*index.offset);
        }
        field("index");
        if (index.index) {
          writer_.integer(*index.index);
        } else {
          writer_.op(NONE);
        }
      });
    });
  }

  void item_location(const ItemLocation& location) {
    object(kFilesystemModule, "_StorageInfo", [&] {
      // _StorageInfo.__getstate__ leaves out the fields that are None.
      dict_of_fields([&] {
        field("relative_path");
        writer_.memo_string(location.relative_path);
        field("offset");
        unsigned_integer(location.offset);
        field("length");
        unsigned_integer(location.length);
        if (!location.transform_descriptors.empty()) {
          field("transform_descriptors");
          list(location.transform_descriptors, [&](const std::string& descriptor) { writer_.memo_string(descriptor); });
        }
      });
    });
  }

  void storage_meta(const StorageMeta& meta) {
    object(kMetadataModule, "StorageMeta", [&] {
      dict_of_fields([&] {
        field("checkpoint_id");
        if (meta.checkpoint_id) {
          // One string argument, which pathlib reads on every Python version.
          writer_.global("pathlib", "PosixPath");
          writer_.string(*meta.checkpoint_id);
          writer_.op(TUPLE1);
          writer_.op(REDUCE);
        } else {
          writer_.op(NONE);
        }
        field("save_id");
        optional_string(meta.save_id);
        field("load_id");
        optional_string(meta.load_id);
        field("modules");
        list(meta.modules, [&](const std::string& module) { writer_.string(module); });
      });
    });
  }

  // An instance of module.name: NEWOBJ, then BUILD with the state `state`
  // writes (none for an object whose __dict__ is empty).
  template <typename State>
  void object(const std::string& module, const std::string& name, const State& state) {
    writer_.global(module, name);
    writer_.op(EMPTY_TUPLE);
    writer_.op(NEWOBJ);
    if constexpr (!std::is_same_v<State, std::nullptr_t>) {
      state();
      writer_.op(BUILD);
    }
  }

  // A __dict__: `fields` writes field() and value pairs.
  template <typename Fields>
  void dict_of_fields(const Fields& fields) {
    writer_.op(EMPTY_DICT);
    writer_.op(MARK);
    fields();
    writer_.op(SETITEMS);
  }

  void field(const char* name) {
    writer_.memo_string(name);
  }

  template <typename Pairs, typename Write>
  void dict(const Pairs& pairs, const Write& write_pair) {
    writer_.op(EMPTY_DICT);
    batched(pairs, write_pair, SETITEMS);
  }

  template <typename Items, typename Write>
  void list(const Items& items, const Write& write_item) {
    writer_.op(EMPTY_LIST);
    batched(items, write_item, APPENDS);
  }

  // The items of a dict or list, by MARK ... `add` batches of kBatchSize.
  template <typename Items, typename Write>
  void batched(const Items& items, const Write& write_item, Opcode add) {
    size_t count = 0;
    for (const auto& item : items) {
      if (count % PickleWriter::kBatchSize == 0) {
        if (count > 0) {
          writer_.op(add);
        }
        writer_.op(MARK);
      }
      write_item(item);
      ++count;
    }
    if (count > 0) {
      writer_.op(add);
    }
  }

  template <typename Write>
  void tuple(size_t size, const Write& write_item) {
    if (size > 3) {
      writer_.op(MARK);
    }
    for (size_t i = 0; i < size; ++i) {
      write_item(i);
    }
    writer_.tuple_end(size);
  }

  // torch.Size(tuple).
  void size(const std::vector<int64_t>& values) {
    writer_.global("torch", "Size");
    tuple(values.size(), [&](size_t i) { writer_.integer(values[i]); });
    writer_.op(TUPLE1);
    writer_.op(REDUCE);
  }

  void optional_string(const std::optional<std::string>& text) {
    if (text) {
      writer_.string(*text);
    } else {
      writer_.op(NONE);
    }
  }

  void unsigned_integer(uint64_t value) {
    TORCH_CHECK(value <= static_cast<uint64_t>(INT64_MAX), "DCP metadata cannot record the offset ", value);
    writer_.integer(static_cast<int64_t>(value));
  }

  PickleWriter writer_{4};
};

} // namespace

std::string pickle_metadata(const Metadata& metadata) {
  return MetadataPickler().run(metadata);
}

} // namespace torch_ext::dcp
