// `.metadata` as upstream's FileSystemWriter writes it: pickle protocol 4 of
// DCP's dataclasses, each an object made by NEWOBJ and filled by BUILD with
// its __dict__ (TensorProperties with its __getstate__ tuple), so that
// pickle.load gives the same Metadata.
#include <torch_ext/dcp.h>

#include <cstring>
#include <unordered_map>
#include <utility>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/pickle/dtypes.h"
#include "torch_ext/csrc/pickle/pickle_opcodes.h"

namespace torch_ext::dcp {
namespace {

using namespace detail::pickle;

constexpr const char* kMetadataModule = "torch.distributed.checkpoint.metadata";
constexpr const char* kFilesystemModule = "torch.distributed.checkpoint.filesystem";
// Python's pickler batches APPENDS and SETITEMS by this many items.
constexpr size_t kBatchSize = 1000;

class MetadataPickler {
 public:
  std::string run(const Metadata& metadata) {
    op(PROTO);
    out_.push_back(4);
    object(kMetadataModule, "Metadata", [&] {
      dict_of_fields([&] {
        field("state_dict_metadata");
        dict(metadata.state_dict_metadata, [&](const std::pair<std::string, Entry>& entry) {
          memo_string(entry.first);
          if (const auto* tensor = std::get_if<TensorEntry>(&entry.second)) {
            tensor_entry(*tensor);
          } else {
            object(kMetadataModule, "BytesStorageMetadata", nullptr);
          }
        });
        field("planner_data");
        if (metadata.planner_data) {
          dict(*metadata.planner_data, [&](const std::pair<std::string, ObjectPath>& entry) {
            memo_string(entry.first);
            tuple(entry.second.size(), [&](size_t i) {
              if (const auto* key = std::get_if<std::string>(&entry.second[i])) {
                memo_string(*key);
              } else {
                integer(std::get<int64_t>(entry.second[i]));
              }
            });
          });
        } else {
          op(NONE);
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
          op(NONE);
        }
        field("version");
        optional_string(metadata.version);
      });
    });
    op(STOP);
    return std::move(out_);
  }

 private:
  void tensor_entry(const TensorEntry& entry) {
    object(kMetadataModule, "TensorStorageMetadata", [&] {
      dict_of_fields([&] {
        field("properties");
        object(kMetadataModule, "TensorProperties", [&] {
          // TensorProperties.__getstate__: (dtype, layout, requires_grad,
          // _MEM_FORMAT_ENCODING, pin_memory).
          op(MARK);
          const detail::DtypeNames* names = detail::dtype_names(entry.dtype);
          TORCH_CHECK_TYPE(names != nullptr, "DCP metadata cannot record the dtype ", entry.dtype);
          global("torch", std::string(names->python_name));
          global("torch.serialization", "_get_layout");
          memo_string("torch.strided");
          op(TUPLE1);
          op(REDUCE);
          op(entry.requires_grad ? NEWTRUE : NEWFALSE);
          global(kMetadataModule, "_MEM_FORMAT_ENCODING");
          integer(entry.memory_format);
          op(TUPLE1);
          op(REDUCE);
          op(entry.pin_memory ? NEWTRUE : NEWFALSE);
          op(TUPLE);
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
        memo_string(index.fqn);
        if (index.offset) {
          field("offset");
          size(*index.offset);
        }
        field("index");
        if (index.index) {
          integer(*index.index);
        } else {
          op(NONE);
        }
      });
    });
  }

  void item_location(const ItemLocation& location) {
    object(kFilesystemModule, "_StorageInfo", [&] {
      // _StorageInfo.__getstate__ leaves out the fields that are None.
      dict_of_fields([&] {
        field("relative_path");
        memo_string(location.relative_path);
        field("offset");
        unsigned_integer(location.offset);
        field("length");
        unsigned_integer(location.length);
        if (!location.transform_descriptors.empty()) {
          field("transform_descriptors");
          list(location.transform_descriptors, [&](const std::string& descriptor) { memo_string(descriptor); });
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
          global("pathlib", "PosixPath");
          string(*meta.checkpoint_id);
          op(TUPLE1);
          op(REDUCE);
        } else {
          op(NONE);
        }
        field("save_id");
        optional_string(meta.save_id);
        field("load_id");
        optional_string(meta.load_id);
        field("modules");
        list(meta.modules, [&](const std::string& module) { string(module); });
      });
    });
  }

  // An instance of module.name: NEWOBJ, then BUILD with the state `state`
  // writes (none for an object whose __dict__ is empty).
  template <typename State>
  void object(const std::string& module, const std::string& name, const State& state) {
    global(module, name);
    op(EMPTY_TUPLE);
    op(NEWOBJ);
    if constexpr (!std::is_same_v<State, std::nullptr_t>) {
      state();
      op(BUILD);
    }
  }

  // A __dict__: `fields` writes field() and value pairs.
  template <typename Fields>
  void dict_of_fields(const Fields& fields) {
    op(EMPTY_DICT);
    op(MARK);
    fields();
    op(SETITEMS);
  }

  void field(const char* name) {
    memo_string(name);
  }

  template <typename Pairs, typename Write>
  void dict(const Pairs& pairs, const Write& write_pair) {
    op(EMPTY_DICT);
    size_t count = 0;
    for (const auto& pair : pairs) {
      if (count % kBatchSize == 0) {
        if (count > 0) {
          op(SETITEMS);
        }
        op(MARK);
      }
      write_pair(pair);
      ++count;
    }
    if (count > 0) {
      op(SETITEMS);
    }
  }

  template <typename Items, typename Write>
  void list(const Items& items, const Write& write_item) {
    op(EMPTY_LIST);
    size_t count = 0;
    for (const auto& item : items) {
      if (count % kBatchSize == 0) {
        if (count > 0) {
          op(APPENDS);
        }
        op(MARK);
      }
      write_item(item);
      ++count;
    }
    if (count > 0) {
      op(APPENDS);
    }
  }

  template <typename Write>
  void tuple(size_t size, const Write& write_item) {
    if (size > 3) {
      op(MARK);
    }
    for (size_t i = 0; i < size; ++i) {
      write_item(i);
    }
    static constexpr Opcode kSmall[] = {EMPTY_TUPLE, TUPLE1, TUPLE2, TUPLE3};
    op(size <= 3 ? kSmall[size] : TUPLE);
  }

  // torch.Size(tuple).
  void size(const std::vector<int64_t>& values) {
    global("torch", "Size");
    tuple(values.size(), [&](size_t i) { integer(values[i]); });
    op(TUPLE1);
    op(REDUCE);
  }

  void optional_string(const std::optional<std::string>& text) {
    if (text) {
      string(*text);
    } else {
      op(NONE);
    }
  }

  void integer(int64_t value) {
    if (value >= 0 && value < 256) {
      op(BININT1);
      out_.push_back(static_cast<char>(value));
    } else if (value >= 0 && value < 65536) {
      op(BININT2);
      little_endian(static_cast<uint64_t>(value), 2);
    } else if (value >= INT32_MIN && value <= INT32_MAX) {
      op(BININT);
      little_endian(static_cast<uint64_t>(value), 4);
    } else {
      // The fewest two's-complement bytes that hold it, as Python writes.
      int bytes = 8;
      while (bytes > 1) {
        const int64_t low = -(int64_t{1} << (8 * (bytes - 1) - 1));
        if (value < low || value > -low - 1) {
          break;
        }
        --bytes;
      }
      op(LONG1);
      out_.push_back(static_cast<char>(bytes));
      little_endian(static_cast<uint64_t>(value), bytes);
    }
  }

  void unsigned_integer(uint64_t value) {
    TORCH_CHECK(value <= static_cast<uint64_t>(INT64_MAX), "DCP metadata cannot record the offset ", value);
    integer(static_cast<int64_t>(value));
  }

  void string(const std::string& text) {
    if (text.size() < 256) {
      op(SHORT_BINUNICODE);
      out_.push_back(static_cast<char>(text.size()));
    } else {
      op(BINUNICODE8);
      little_endian(text.size(), 8);
    }
    out_.append(text);
  }

  // Strings met more than once (field names, keys, file names) and globals
  // are written once and fetched from the memo after.
  void memo_string(const std::string& text) {
    memoized("X" + text, [&] { string(text); });
  }

  void global(const std::string& module, const std::string& name) {
    memoized("c" + module + "\n" + name, [&] {
      string(module);
      string(name);
      op(STACK_GLOBAL);
    });
  }

  template <typename Write>
  void memoized(const std::string& id, const Write& write) {
    const auto found = memo_.find(id);
    if (found != memo_.end()) {
      op(found->second < 256 ? BINGET : LONG_BINGET);
      little_endian(found->second, found->second < 256 ? 1 : 4);
      return;
    }
    write();
    op(MEMOIZE);
    memo_.emplace(id, static_cast<uint32_t>(memo_.size()));
  }

  void op(Opcode code) {
    out_.push_back(static_cast<char>(code));
  }

  void little_endian(uint64_t value, int bytes) {
    for (int i = 0; i < bytes; ++i) {
      out_.push_back(static_cast<char>(value >> (8 * i)));
    }
  }

  std::string out_;
  std::unordered_map<std::string, uint32_t> memo_;
};

} // namespace

std::string pickle_metadata(const Metadata& metadata) {
  return MetadataPickler().run(metadata);
}

} // namespace torch_ext::dcp
