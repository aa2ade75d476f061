#include "select_keys.h"

#include <optional>
#include <string_view>

#include <c10/util/Exception.h>

#include <torch_ext/checkpoint_values.h>

#include "state_value.h"

namespace torch_ext::detail {
namespace {

struct Wanted {
  std::string_view rest; // of the key, below the value at hand; empty: all of it
  size_t key; // index into the keys
};

class Selector {
 public:
  explicit Selector(size_t keys) : matched_(keys, false) {}

  std::optional<c10::IValue> select(const c10::IValue& value, const std::vector<Wanted>& wanted) {
    bool whole = false;
    for (const Wanted& w : wanted) {
      if (w.rest.empty()) {
        matched_[w.key] = true;
        whole = true;
      }
    }
    if (whole) {
      return value;
    }
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
          if (auto item = select(entry.value(), below(wanted, key_text(entry.key())))) {
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
          if (auto item = select(items[i], below(wanted, std::to_string(i)))) {
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
          if (auto item = select(items[i], below(wanted, std::to_string(i)))) {
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
  // What of `wanted` lies in the entry named `name`.
  static std::vector<Wanted> below(const std::vector<Wanted>& wanted, const std::string& name) {
    std::vector<Wanted> result;
    for (const Wanted& w : wanted) {
      if (w.rest == name) {
        result.push_back({std::string_view(), w.key});
      } else if (w.rest.size() > name.size() && w.rest.compare(0, name.size(), name) == 0 && w.rest[name.size()] == '.') {
        result.push_back({w.rest.substr(name.size() + 1), w.key});
      }
    }
    return result;
  }

  std::vector<bool> matched_;
};

} // namespace

c10::IValue select_keys(const c10::IValue& state, const std::vector<std::string>& keys, const std::string& file) {
  std::vector<Wanted> wanted;
  for (size_t i = 0; i < keys.size(); ++i) {
    TORCH_CHECK_VALUE(!keys[i].empty(), "keys must be dotted paths to entries, got ''");
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
  TORCH_CHECK_VALUE(missing.empty(), "the checkpoint file '", file, "' has no entry ", missing);
  return std::move(*selected);
}

} // namespace torch_ext::detail
