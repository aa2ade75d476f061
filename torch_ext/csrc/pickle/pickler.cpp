#include "pickler.h"

#include <unordered_map>
#include <utility>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/state/state_value.h"

#include "dtypes.h"
#include "pickle_opcodes.h"
#include "pickle_writer.h"

namespace torch_ext::detail {
namespace {

using namespace pickle;

class Pickler {
 public:
  explicit Pickler(KeyPath& path) : path_(path) {}

  PickledState finish() {
    return {writer_.finish(), std::move(storages_)};
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
    writer_.global("torch._utils", legacy ? "_rebuild_tensor_v2" : "_rebuild_tensor_v3");
    writer_.op(MARK);
    persistent_storage(tensor, names);
    writer_.integer(tensor.storage_offset());
    int_tuple(tensor.sizes());
    int_tuple(tensor.strides());
    writer_.op(tensor.requires_grad() ? NEWTRUE : NEWFALSE);
    writer_.global("collections", "OrderedDict"); // backward hooks: none
    writer_.op(EMPTY_TUPLE);
    writer_.op(REDUCE);
    if (!legacy) {
      writer_.global("torch", std::string(names.python_name));
    }
    writer_.op(TUPLE);
    writer_.op(REDUCE);
  }

  void begin(const c10::IValue& container, ValueKind kind) {
    start_item();
    frames_.push_back({kind, 0, false});
    switch (kind) {
      case ValueKind::List:
        writer_.op(EMPTY_LIST);
        return;
      case ValueKind::Dict:
        writer_.op(EMPTY_DICT);
        return;
      case ValueKind::OrderedDict:
        writer_.global("collections", "OrderedDict");
        writer_.op(EMPTY_TUPLE);
        writer_.op(REDUCE);
        return;
      case ValueKind::Size:
        writer_.global("torch", "Size");
        [[fallthrough]];
      case ValueKind::Tuple:
        if (container.toTupleRef().elements().size() > 3) {
          writer_.op(MARK);
        }
        return;
      default:
        TORCH_INTERNAL_ASSERT(false);
    }
  }

  void key(const c10::IValue& key) {
    Frame& frame = frames_.back();
    if (frame.items % PickleWriter::kBatchSize == 0) {
      close_batch(frame);
      writer_.op(MARK);
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
          writer_.op(BUILD);
        }
        return;
      case ValueKind::Tuple:
      case ValueKind::Size:
        writer_.tuple_end(container.toTupleRef().elements().size());
        if (kind == ValueKind::Size) {
          writer_.op(TUPLE1);
          writer_.op(REDUCE);
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

  // Opens an APPENDS batch before every PickleWriter::kBatchSize-th item of a list.
  void start_item() {
    if (frames_.empty() || frames_.back().kind != ValueKind::List) {
      return;
    }
    Frame& frame = frames_.back();
    if (frame.items % PickleWriter::kBatchSize == 0) {
      close_batch(frame);
      writer_.op(MARK);
    }
    ++frame.items;
  }

  void close_batch(const Frame& frame) {
    if (frame.items == 0 || frame.reading_attributes) {
      return;
    }
    writer_.op(frame.kind == ValueKind::List ? APPENDS : SETITEMS);
  }

  void scalar(const c10::IValue& value, ValueKind kind) {
    switch (kind) {
      case ValueKind::None:
        writer_.op(NONE);
        return;
      case ValueKind::Bool:
        writer_.op(value.toBool() ? NEWTRUE : NEWFALSE);
        return;
      case ValueKind::Int:
        writer_.integer(value.toInt());
        return;
      case ValueKind::Float:
        writer_.binfloat(value.toDouble());
        return;
      case ValueKind::String:
        writer_.string(value.toStringRef());
        return;
      default:
        TORCH_INTERNAL_ASSERT(false);
    }
  }

  void int_tuple(c10::IntArrayRef values) {
    if (values.size() > 3) {
      writer_.op(MARK);
    }
    for (const int64_t value : values) {
      writer_.integer(value);
    }
    writer_.tuple_end(values.size());
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
    writer_.op(MARK);
    writer_.memo_string("storage");
    if (names.storage_class.empty()) {
      writer_.global("torch.storage", "UntypedStorage");
    } else {
      writer_.global("torch", std::string(names.storage_class));
    }
    writer_.string(std::to_string(it->second.index));
    writer_.memo_string("cpu");
    writer_.integer(static_cast<int64_t>(names.storage_class.empty() ? nbytes : nbytes / tensor.element_size()));
    writer_.op(TUPLE);
    writer_.op(BINPERSID);
  }

  struct StorageKey {
    size_t index;
    c10::ScalarType dtype;
    std::string first_path;
  };

  KeyPath& path_;
  PickleWriter writer_{2};
  std::vector<Frame> frames_;
  std::vector<c10::Storage> storages_;
  std::unordered_map<const c10::StorageImpl*, StorageKey> storage_keys_;
};

} // namespace

PickledState pickle_state(const c10::IValue& state) {
  KeyPath path;
  Pickler pickler(path);
  visit_state(state, pickler, path);
  return pickler.finish();
}

} // namespace torch_ext::detail
