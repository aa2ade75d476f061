#pragma once

// The one walk over the values a checkpoint holds (value_kind() in
// <torch_ext/checkpoint_values.h>), with the key path (key_path.h) that
// every error names.
// Staging, the pickler, the Python conversion and the loader are visitors of
// it; IValueBuilder rebuilds a value from the same events. Exported for the
// Python module, which walks Python objects with the same rules; not a
// public API.

#include <ATen/core/ivalue.h>

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <torch_ext/checkpoint_values.h>
#include <torch_ext/export.h>
#include <torch_ext/local_shards.h>

#include "key_path.h"

namespace torch_ext::detail {

// Deeper values are refused: every walk recurses once per level.
constexpr size_t kMaxDepth = 512;

// A TypeError naming the entry and what a checkpoint can hold.
[[noreturn]] TORCH_EXT_API void throw_unsupported(const KeyPath& path, const std::string& what);

// value_kind(value), or throw_unsupported. Checks the depth bound too.
TORCH_EXT_API ValueKind kind_at(const c10::IValue& value, const KeyPath& path);

// The TypeError for a LocalShards in a walk that does not take one.
[[noreturn]] TORCH_EXT_API void throw_shards_unsupported(const KeyPath& path);

// Whether a visitor takes LocalShards: it defines
// `void shards(const LocalShards&)`. Only the sharded DCP save's walks do.
template <typename Visitor, typename = void>
struct TakesShards : std::false_type {};
template <typename Visitor>
struct TakesShards<Visitor, std::void_t<decltype(std::declval<Visitor&>().shards(std::declval<const LocalShards&>()))>>
    : std::true_type {};

// Throws unless a container may sit at `path`: kMaxDepth.
TORCH_EXT_API void check_depth(const KeyPath& path);

// Throws a TypeError naming the entry unless is_valid_key(key).
TORCH_EXT_API void check_key(const c10::IValue& key, const KeyPath& path);
[[noreturn]] TORCH_EXT_API void throw_invalid_key(const KeyPath& path, const std::string& key_type);

TORCH_EXT_API bool is_container(ValueKind kind);

// Gives `dict` the key type str when every key is a str (TorchScript's
// Dict(str, Any), the type of a state dict), else Any. For dicts built from
// a file or from Python, once they are complete.
TORCH_EXT_API void settle_key_type(c10::impl::GenericDict& dict);

// Marks `tuple` as torch.Size (make_size builds one).
TORCH_EXT_API void mark_size(const c10::IValue& tuple);

// Walks `value` depth-first, in order. The visitor provides:
//   void leaf(const c10::IValue&, ValueKind);   None, Bool, Int, Float, String
//   void tensor(const at::Tensor&);
//   void begin(const c10::IValue& container, ValueKind);
//   void key(const c10::IValue& key);           before each value of a dict
//   void attributes(const c10::impl::GenericDict&);  an OrderedDict's
//       non-empty attributes, after its entries; then the walk visits them
//       as a Dict value
//   void end(const c10::IValue& container, ValueKind);
// and, to take them, void shards(const LocalShards&) (TakesShards: a
// visitor without it refuses a LocalShards, naming the entry); it may read
// `path` (where the current value sits) in any of them.
template <typename Visitor>
void visit_state(const c10::IValue& value, Visitor& visitor, KeyPath& path) {
  const ValueKind kind = kind_at(value, path);
  switch (kind) {
    case ValueKind::Tensor:
      visitor.tensor(value.toTensor());
      return;
    case ValueKind::LocalShards:
      if constexpr (TakesShards<Visitor>::value) {
        visitor.shards(*as_local_shards(value));
        return;
      } else {
        throw_shards_unsupported(path);
      }
    case ValueKind::List:
    case ValueKind::Tuple:
    case ValueKind::Size: {
      visitor.begin(value, kind);
      const auto visit_items = [&](const auto& items) {
        for (size_t i = 0; i < items.size(); ++i) {
          path.push_index(i);
          visit_state(items[i], visitor, path);
          path.pop();
        }
      };
      if (kind == ValueKind::List) {
        visit_items(value.toListRef());
      } else {
        visit_items(value.toTupleRef().elements());
      }
      visitor.end(value, kind);
      return;
    }
    case ValueKind::Dict:
    case ValueKind::OrderedDict: {
      visitor.begin(value, kind);
      for (const auto& entry : value.toGenericDict()) {
        check_key(entry.key(), path);
        path.push_key(entry.key());
        visitor.key(entry.key());
        visit_state(entry.value(), visitor, path);
        path.pop();
      }
      if (kind == ValueKind::OrderedDict) {
        const c10::impl::GenericDict attributes = *ordered_dict_attributes(value);
        if (!attributes.empty()) {
          visitor.attributes(attributes);
          path.push_key(std::string("__dict__"));
          visit_state(attributes, visitor, path);
          path.pop();
        }
      }
      visitor.end(value, kind);
      return;
    }
    default:
      visitor.leaf(value, kind);
      return;
  }
}

// A visit_state visitor that looks at tensors only: derive and define
// tensor().
struct TensorVisitor {
  void leaf(const c10::IValue& /*value*/, ValueKind /*kind*/) {}
  void begin(const c10::IValue& /*container*/, ValueKind /*kind*/) {}
  void key(const c10::IValue& /*key*/) {}
  void attributes(const c10::impl::GenericDict& /*attributes*/) {}
  void end(const c10::IValue& /*container*/, ValueKind /*kind*/) {}
};

// Builds a value from visit_state's events (or from another source that
// sends the same ones: the Python conversion does). Tensors are taken as
// given; a visitor that changes them calls tensor() with its own.
class TORCH_EXT_API IValueBuilder {
 public:
  void leaf(const c10::IValue& value, ValueKind kind);
  void tensor(const at::Tensor& tensor);
  void begin(const c10::IValue& container, ValueKind kind);
  void begin(ValueKind kind);
  void key(const c10::IValue& key);
  void attributes(const c10::impl::GenericDict& /*attributes*/);
  void end(const c10::IValue& container, ValueKind kind);
  void end(ValueKind kind);

  // The value built, once the outermost end() (or a lone leaf) is done.
  c10::IValue take();

 private:
  struct Frame {
    ValueKind kind;
    std::vector<c10::IValue> items; // sequences
    c10::impl::GenericDict dict{c10::AnyType::get(), c10::AnyType::get()};
    c10::IValue pending_key;
    bool reading_attributes = false;
    c10::impl::GenericDict attributes{c10::StringType::get(), c10::AnyType::get()};
  };
  void add(c10::IValue value);

  std::vector<Frame> frames_;
  c10::IValue result_;
};

} // namespace torch_ext::detail
