#include "select_keys.h"

#include <optional>
#include <string_view>

#include <c10/util/Exception.h>

#include <torch_ext/checkpoint_values.h>

#include "key_path.h"
#include "state_value.h"

namespace torch_ext::detail {
namespace {

struct Wanted {
  std::string_view rest; // of the key, read from the value at hand
  size_t key; // index into the keys
};

class Selector {
 public:
  explicit Selector(size_t keys) : matched_(keys, false) {}

  // What of `value` `wanted` names; nullopt for nothing.
  std::optional<c10::IValue> select(const c10::IValue& value, const std::vector<Wanted>& wanted) {
    const std::optional<ValueKind> kind = value_kind(value);
    if (!kind) {
      return std::nullopt;
    }
    switch (*kind) {
      case ValueKind::Dict:
      case ValueKind::OrderedDict: {
        const c10::impl::GenericDict dict = value.toGenericDict();
        c10::impl::GenericDict selected(dict.keyType(), dict.valueType());
        for (const auto& entry : dict) {
          if (auto item = select_entry(entry.value(), key_text(entry.key()), wanted)) {
            selected.insert(entry.key(), std::move(*item));
          }
        }
        if (selected.empty()) {
          return std::nullopt;
        }
        if (*kind == ValueKind::OrderedDict) {
          mark_ordered_dict(selected, *ordered_dict_attributes(value));
        }
        return selected;
      }
      case ValueKind::List: {
        c10::impl::GenericList selected(c10::AnyType::get());
        const auto& items = value.toListRef();
        for (size_t i = 0; i < items.size(); ++i) {
          if (auto item = select_entry(items[i], index_text(i), wanted)) {
            selected.push_back(std::move(*item));
          }
        }
        return selected.empty() ? std::nullopt : std::optional<c10::IValue>(selected);
      }
      case ValueKind::Tuple:
      case ValueKind::Size: {
        std::vector<c10::IValue> selected;
        const auto& items = value.toTupleRef().elements();
        for (size_t i = 0; i < items.size(); ++i) {
          if (auto item = select_entry(items[i], index_text(i), wanted)) {
            selected.push_back(std::move(*item));
          }
        }
        if (selected.empty()) {
          return std::nullopt;
        }
        c10::IValue tuple(c10::ivalue::Tuple::create(std::move(selected)));
        if (*kind == ValueKind::Size) {
          mark_size(tuple);
        }
        return tuple;
      }
      default:
        return std::nullopt;
    }
  }

  const std::vector<bool>& matched() const {
    return matched_;
  }

 private:
  // What of the entry `step` of a container `wanted` names: all of it if a
  // key ends there. Keys below it are read on even then (`model` and
  // `model.fc.weight` both name something).
  std::optional<c10::IValue> select_entry(
      const c10::IValue& value, const std::string& step, const std::vector<Wanted>& wanted) {
    bool whole = false;
    std::vector<Wanted> below;
    for (const Wanted& w : wanted) {
      const PathStep read = read_step(w.rest, step);
      if (read.kind == PathStep::kEntry) {
        matched_[w.key] = true;
        whole = true;
      } else if (read.kind == PathStep::kBelow) {
        below.push_back({read.rest, w.key});
      }
    }
    std::optional<c10::IValue> selected;
    if (!below.empty()) {
      selected = select(value, below);
    }
    return whole ? std::optional<c10::IValue>(value) : selected;
  }

  std::vector<bool> matched_;
};

} // namespace

c10::IValue select_keys(const c10::IValue& state, const std::vector<std::string>& keys, const std::string& file) {
  std::vector<Wanted> wanted;
  for (size_t i = 0; i < keys.size(); ++i) {
    wanted.push_back({keys[i], i});
  }
  Selector selector(keys.size());
  std::optional<c10::IValue> selected = selector.select(state, wanted);
  std::string missing;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!selector.matched()[i]) {
      missing += (missing.empty() ? "'" : ", '") + keys[i] + "'";
    }
  }
  TORCH_CHECK_VALUE(
      missing.empty(),
      "the checkpoint file '",
      file,
      "' has no entry ",
      missing,
      "; keys are paths as errors print them: the dict keys and list indices on the way to the entry, joined by "
      "dots (`model.fc.weight`, `optim.param_groups.0.lr`)");
  return std::move(*selected);
}

} // namespace torch_ext::detail
