#include "pickler.h"

#include <cstring>
#include <unordered_map>
#include <utility>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/state/state_value.h"

#include "dtypes.h"
#include "pickle_opcodes.h"

namespace torch_ext::detail {
namespace {

using namespace pickle;

// Python's pickler batches APPENDS and SETITEMS by this many items.
constexpr size_t kBatchSize = 1000;

class Pickler {
 public:
  explicit Pickler(KeyPath& path) : path_(path) {
    op(PROTO);
    out_.push_back(2);
  }

  PickledState finish() {
    op(STOP);
    return {std::move(out_), std::move(storages_)};
  }

  void leaf(const c10::IValue& value, ValueKind kind) {
    start_item();
    scalar(value, kind);
  }

  void tensor(const at::Tensor& original) {
    start_item();
    // A conjugate or negative view has no bits of its own to write.
    const at::Tensor tensor = original.resolve_conj().resolve_neg();
    TORCH_CHECK_TYPE(
        tensor.device().is_cpu(),
        path_.describe(),
        " is a tensor on ",
        tensor.device(),
        "; checkpoints are written from CPU tensors (AsyncCheckpointer stages them to the CPU)");
    const DtypeNames& names = *dtype_names(tensor.scalar_type());
    const bool legacy = !names.storage_class.empty();
    global("torch._utils", legacy ? "_rebuild_tensor_v2" : "_rebuild_tensor_v3");
    op(MARK);
    persistent_storage(tensor, names);
    integer(tensor.storage_offset());
    int_tuple(tensor.sizes());
    int_tuple(tensor.strides());
    op(tensor.requires_grad() ? NEWTRUE : NEWFALSE);
    global("collections", "OrderedDict"); // backward hooks: none
    op(EMPTY_TUPLE);
    op(REDUCE);
    if (!legacy) {
      global("torch", std::string(names.python_name));
    }
    op(TUPLE);
    op(REDUCE);
  }

  void begin(const c10::IValue& container, ValueKind kind) {
    start_item();
    frames_.push_back({kind, 0, false});
    switch (kind) {
      case ValueKind::List:
        op(EMPTY_LIST);
        return;
      case ValueKind::Dict:
        op(EMPTY_DICT);
        return;
      case ValueKind::OrderedDict:
        global("collections", "OrderedDict");
        op(EMPTY_TUPLE);
        op(REDUCE);
        return;
      case ValueKind::Size:
        global("torch", "Size");
        [[fallthrough]];
      case ValueKind::Tuple:
        if (container.toTupleRef().elements().size() > 3) {
          op(MARK);
        }
        return;
      default:
        TORCH_INTERNAL_ASSERT(false);
    }
  }

  void key(const c10::IValue& key) {
    Frame& frame = frames_.back();
    if (frame.items % kBatchSize == 0) {
      close_batch(frame);
      op(MARK);
    }
    ++frame.items;
    scalar(key, *value_kind(key));
  }

  void attributes(const c10::impl::GenericDict& /*attributes*/) {
    Frame& frame = frames_.back();
    close_batch(frame);
    frame.items = 0;
    frame.reading_attributes = true;
  }

  void end(const c10::IValue& container, ValueKind kind) {
    Frame frame = frames_.back();
    frames_.pop_back();
    switch (kind) {
      case ValueKind::List:
      case ValueKind::Dict:
        close_batch(frame);
        return;
      case ValueKind::OrderedDict:
        close_batch(frame);
        if (frame.reading_attributes) {
          op(BUILD);
        }
        return;
      case ValueKind::Tuple:
      case ValueKind::Size:
        tuple_end(container.toTupleRef().elements().size());
        if (kind == ValueKind::Size) {
          op(TUPLE1);
          op(REDUCE);
        }
        return;
      default:
        TORCH_INTERNAL_ASSERT(false);
    }
  }

 private:
  struct Frame {
    ValueKind kind;
    size_t items;
    bool reading_attributes;
  };

  // Opens an APPENDS batch before every kBatchSize-th item of a list.
  void start_item() {
    if (frames_.empty() || frames_.back().kind != ValueKind::List) {
      return;
    }
    Frame& frame = frames_.back();
    if (frame.items % kBatchSize == 0) {
      close_batch(frame);
      op(MARK);
    }
    ++frame.items;
  }

  void close_batch(const Frame& frame) {
    if (frame.items == 0 || frame.reading_attributes) {
      return;
    }
    op(frame.kind == ValueKind::List ? APPENDS : SETITEMS);
  }

  void tuple_end(size_t size) {
    static constexpr Opcode kSmall[] = {EMPTY_TUPLE, TUPLE1, TUPLE2, TUPLE3};
    op(size <= 3 ? kSmall[size] : TUPLE);
  }

  void scalar(const c10::IValue& value, ValueKind kind) {
    switch (kind) {
      case ValueKind::None:
        op(NONE);
        return;
      case ValueKind::Bool:
        op(value.toBool() ? NEWTRUE : NEWFALSE);
        return;
      case ValueKind::Int:
        integer(value.toInt());
        return;
      case ValueKind::Float: {
        op(BINFLOAT);
        uint64_t bits;
        const double number = value.toDouble();
        std::memcpy(&bits, &number, sizeof(bits));
        for (int shift = 56; shift >= 0; shift -= 8) { // big-endian
          out_.push_back(static_cast<char>(bits >> shift));
        }
        return;
      }
      case ValueKind::String:
        string(value.toStringRef());
        return;
      default:
        TORCH_INTERNAL_ASSERT(false);
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

  void string(const std::string& text) {
    op(BINUNICODE);
    little_endian(text.size(), 4);
    out_.append(text);
  }

  void int_tuple(c10::IntArrayRef values) {
    if (values.size() > 3) {
      op(MARK);
    }
    for (const int64_t value : values) {
      integer(value);
    }
    tuple_end(values.size());
  }

  // ('storage', <storage class>, key, 'cpu', numel), once per use, as
  // torch.save writes it.
  void persistent_storage(const at::Tensor& tensor, const DtypeNames& names) {
    const c10::StorageImpl* impl = tensor.storage().unsafeGetStorageImpl();
    auto [it, added] = storage_keys_.try_emplace(impl, StorageKey{storages_.size(), tensor.scalar_type(), path_.str()});
    if (added) {
      storages_.push_back(tensor.storage());
    }
    TORCH_CHECK_TYPE(
        it->second.dtype == tensor.scalar_type(),
        path_.describe(),
        " views the storage of entry '",
        it->second.first_path,
        "' as ",
        tensor.scalar_type(),
        " instead of ",
        it->second.dtype,
        "; torch.save cannot save one storage viewed with two dtypes either");
    const size_t nbytes = tensor.storage().nbytes();
    op(MARK);
    memo_string("storage");
    if (names.storage_class.empty()) {
      global("torch.storage", "UntypedStorage");
    } else {
      global("torch", std::string(names.storage_class));
    }
    string(std::to_string(it->second.index));
    memo_string("cpu");
    integer(static_cast<int64_t>(names.storage_class.empty() ? nbytes : nbytes / tensor.element_size()));
    op(TUPLE);
    op(BINPERSID);
  }

  // A global or string met before is fetched from the memo.
  void global(const std::string& module, const std::string& name) {
    memoized("c" + module + "\n" + name + "\n", [&] {
      op(GLOBAL);
      out_.append(module).push_back('\n');
      out_.append(name).push_back('\n');
    });
  }

  void memo_string(const std::string& text) {
    memoized("X" + text, [&] { string(text); });
  }

  template <typename Write>
  void memoized(const std::string& id, Write&& write) {
    const auto found = memo_.find(id);
    if (found != memo_.end()) {
      op(found->second < 256 ? BINGET : LONG_BINGET);
      little_endian(found->second, found->second < 256 ? 1 : 4);
      return;
    }
    write();
    const uint32_t index = static_cast<uint32_t>(memo_.size());
    memo_.emplace(id, index);
    op(index < 256 ? BINPUT : LONG_BINPUT);
    little_endian(index, index < 256 ? 1 : 4);
  }

  void op(Opcode code) {
    out_.push_back(static_cast<char>(code));
  }

  void little_endian(uint64_t value, int bytes) {
    for (int i = 0; i < bytes; ++i) {
      out_.push_back(static_cast<char>(value >> (8 * i)));
    }
  }

  struct StorageKey {
    size_t index;
    c10::ScalarType dtype;
    std::string first_path;
  };

  KeyPath& path_;
  std::string out_;
  std::vector<Frame> frames_;
  std::vector<c10::Storage> storages_;
  std::unordered_map<const c10::StorageImpl*, StorageKey> storage_keys_;
  std::unordered_map<std::string, uint32_t> memo_;
};

} // namespace

PickledState pickle_state(const c10::IValue& state) {
  KeyPath path;
  Pickler pickler(path);
  visit_state(state, pickler, path);
  return pickler.finish();
}

} // namespace torch_ext::detail
