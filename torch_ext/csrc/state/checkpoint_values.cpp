#include <torch_ext/checkpoint_values.h>
#include <torch_ext/local_shards.h>

#include <mutex>
#include <unordered_map>
#include <utility>

#include <c10/util/Exception.h>
#include <c10/util/intrusive_ptr.h>

#include "checkpoint_dtypes.h"
#include "state_value.h"

namespace torch_ext {
namespace {

enum class PythonClass : uint8_t { OrderedDict, Size };

// Which c10 dicts and tuples stand for a Python OrderedDict or torch.Size.
// c10 containers have no room for a mark, so it is kept here, keyed by the
// container object. Each entry holds a weak reference: it keeps the
// object's memory (never its refcount) alive, so no other container can take
// its address while the entry exists. Entries of freed containers are swept
// on later calls; until then the weak reference keeps the freed container's
// memory, so sweeping runs often (see sweep_if_due).
class Marks {
 public:
  static Marks& get() {
    static Marks* marks = new Marks(); // never destroyed: used at exit
    return *marks;
  }

  void set(const c10::IValue& container, PythonClass python_class, c10::impl::GenericDict attributes) {
    auto* target = as_target(container);
    std::lock_guard<std::mutex> lock(mutex_);
    sweep_if_due();
    marks_.insert_or_assign(
        target,
        Mark{
            c10::weak_intrusive_ptr<c10::intrusive_ptr_target>(
                c10::intrusive_ptr<c10::intrusive_ptr_target>::unsafe_reclaim_from_nonowning(target)),
            python_class,
            std::move(attributes)});
  }

  // The mark of a live container (the caller holds it).
  std::optional<std::pair<PythonClass, c10::impl::GenericDict>> find(const c10::IValue& container) {
    auto* target = as_target(container);
    std::lock_guard<std::mutex> lock(mutex_);
    sweep_if_due();
    const auto found = marks_.find(target);
    if (found == marks_.end()) {
      return std::nullopt;
    }
    return std::make_pair(found->second.python_class, found->second.attributes);
  }

 private:
  struct Mark {
    c10::weak_intrusive_ptr<c10::intrusive_ptr_target> owner;
    PythonClass python_class;
    c10::impl::GenericDict attributes;
  };

  static c10::intrusive_ptr_target* as_target(const c10::IValue& container) {
    return static_cast<c10::intrusive_ptr_target*>(const_cast<void*>(container.internalToPointer()));
  }

  // A full sweep on every call while there are few marks (the usual case: a
  // state dict and its _metadata), else one per marks/8 calls, so the cost
  // stays constant per call.
  void sweep_if_due() {
    if (++calls_since_sweep_ < marks_.size() / 8 + 1 && marks_.size() > 64) {
      return;
    }
    calls_since_sweep_ = 0;
    for (auto it = marks_.begin(); it != marks_.end();) {
      it = it->second.owner.expired() ? marks_.erase(it) : std::next(it);
    }
  }

  std::mutex mutex_;
  std::unordered_map<const c10::intrusive_ptr_target*, Mark> marks_;
  size_t calls_since_sweep_ = 0;
};

bool is_checkpoint_tensor(const at::Tensor& tensor) {
  return tensor.defined() && tensor.layout() == at::kStrided &&
      !tensor.is_meta() && detail::is_checkpoint_dtype(tensor.scalar_type());
}

} // namespace

std::optional<ValueKind> value_kind(const c10::IValue& value) {
  if (value.isNone()) {
    return ValueKind::None;
  }
  if (value.isBool()) {
    return ValueKind::Bool;
  }
  if (value.isInt()) {
    return ValueKind::Int;
  }
  if (value.isDouble()) {
    return ValueKind::Float;
  }
  if (value.isString()) {
    return ValueKind::String;
  }
  if (value.isTensor()) {
    return is_checkpoint_tensor(value.toTensor()) ? std::optional(ValueKind::Tensor) : std::nullopt;
  }
  if (value.isList()) {
    return ValueKind::List;
  }
  if (value.isTuple()) {
    const auto mark = Marks::get().find(value);
    return mark && mark->first == PythonClass::Size ? ValueKind::Size : ValueKind::Tuple;
  }
  if (value.isGenericDict()) {
    const auto mark = Marks::get().find(value);
    return mark && mark->first == PythonClass::OrderedDict ? ValueKind::OrderedDict : ValueKind::Dict;
  }
  if (as_local_shards(value)) {
    return ValueKind::LocalShards;
  }
  return std::nullopt;
}

bool is_valid_key(const c10::IValue& key) {
  return key.isString() || key.isInt() || key.isDouble() || key.isBool();
}

void mark_ordered_dict(const c10::impl::GenericDict& dict, c10::impl::GenericDict attributes) {
  for (const auto& entry : attributes) {
    TORCH_CHECK_TYPE(
        entry.key().isString(),
        "mark_ordered_dict expected attribute names (str), got a key of type ",
        entry.key().tagKind());
  }
  Marks::get().set(c10::IValue(dict), PythonClass::OrderedDict, std::move(attributes));
}

std::optional<c10::impl::GenericDict> ordered_dict_attributes(const c10::IValue& value) {
  if (!value.isGenericDict()) {
    return std::nullopt;
  }
  auto mark = Marks::get().find(value);
  if (!mark || mark->first != PythonClass::OrderedDict) {
    return std::nullopt;
  }
  return std::move(mark->second);
}

c10::IValue make_size(const std::vector<int64_t>& sizes) {
  std::vector<c10::IValue> items(sizes.begin(), sizes.end());
  c10::IValue size(c10::ivalue::Tuple::create(std::move(items)));
  detail::mark_size(size);
  return size;
}

namespace detail {

void mark_size(const c10::IValue& tuple) {
  TORCH_INTERNAL_ASSERT(tuple.isTuple());
  Marks::get().set(tuple, PythonClass::Size, c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get()));
}

} // namespace detail
} // namespace torch_ext
