#include "flatten.h"

#include <unordered_set>
#include <utility>

#include <c10/util/Exception.h>

#include <torch_ext/local_shards.h>

#include "torch_ext/csrc/state/state_value.h"

namespace torch_ext::detail::dcp {
namespace {

using torch_ext::dcp::PathItem;

// _is_terminal of upstream's traverse_state_dict (a LocalShards is a
// tensor there, as a DTensor is).
bool is_terminal(const c10::IValue& value) {
  if (value.isGenericDict()) {
    return false;
  }
  if (!value.isList()) {
    return true;
  }
  for (const c10::IValue& item : value.toListRef()) {
    if (item.isGenericDict() || item.isTensor() || as_local_shards(item) || (item.isList() && !is_terminal(item))) {
      return false;
    }
  }
  return true;
}

class Flattener {
 public:
  std::vector<FlatEntry> run(const c10::IValue& state_dict) {
    TORCH_CHECK_TYPE(
        state_dict.isGenericDict(), "a DCP checkpoint saves a dict (a state dict), got a ", state_dict.tagKind());
    visit(state_dict);
    return std::move(entries_);
  }

 private:
  void visit(const c10::IValue& value) {
    if (value.isGenericDict()) {
      for (const auto& entry : value.toGenericDict()) {
        path_.emplace_back(key_text(entry.key()));
        visit(entry.value());
        path_.pop_back();
      }
    } else if (!is_terminal(value)) { // a list that holds tensors or dicts
      const auto& items = value.toListRef();
      for (size_t i = 0; i < items.size(); ++i) {
        path_.emplace_back(static_cast<int64_t>(i));
        visit(items[i]);
        path_.pop_back();
      }
    } else if (!path_.empty()) {
      std::string fqn = key_path(path_);
      TORCH_CHECK_VALUE(seen_.insert(fqn).second, "duplicated flatten key ", fqn);
      entries_.push_back(FlatEntry{std::move(fqn), path_, value});
    }
  }

  ObjectPath path_;
  std::vector<FlatEntry> entries_;
  std::unordered_set<std::string> seen_;
};

} // namespace

c10::IValue step_key(const PathItem& step) {
  if (const auto* key = std::get_if<std::string>(&step)) {
    return *key;
  }
  return std::get<int64_t>(step);
}

std::string key_path(const ObjectPath& path, size_t steps) {
  KeyPath key;
  for (size_t i = 0; i < path.size() && i < steps; ++i) {
    key.push_key(step_key(path[i]));
  }
  return key.str();
}

std::vector<FlatEntry> flatten_state_dict(const c10::IValue& state_dict) {
  return Flattener().run(state_dict);
}

// Lists may be padded with None (for list items saved as nothing: empty
// dicts) up to this many per entry, and no further.
constexpr uint64_t kPaddingPerEntry = 64;

Unflattener::Unflattener(std::string where, size_t entries)
    : where_(std::move(where)),
      padding_left_(kPaddingPerEntry * entries + 1024),
      root_(c10::impl::GenericDict(c10::AnyType::get(), c10::AnyType::get())) {
  dicts_.push_back(root_.toGenericDict());
}

void Unflattener::set(const ObjectPath& path, c10::IValue value, const std::string& fqn) {
  TORCH_CHECK(!path.empty() && path.size() <= kMaxDepth, where_, ": the path of entry '", fqn, "' (planner_data) is empty or deeper than ", kMaxDepth, " levels");
  c10::IValue container = root_;
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    c10::IValue child = get(container, path[i], fqn);
    if (child.isNone()) {
      if (std::holds_alternative<std::string>(path[i + 1])) {
        c10::impl::GenericDict dict(c10::AnyType::get(), c10::AnyType::get());
        dicts_.push_back(dict);
        child = std::move(dict);
      } else {
        child = c10::impl::GenericList(c10::AnyType::get());
      }
      put(container, path[i], child);
    } else {
      TORCH_CHECK(
          child.isGenericDict() || child.isList(),
          where_,
          ": the path of entry '",
          fqn,
          "' (planner_data) goes below '",
          key_path(path, i + 1),
          "', which another entry holds as a value");
    }
    container = std::move(child);
  }
  TORCH_CHECK(
      get(container, path.back(), fqn).isNone(),
      where_,
      ": the path of entry '",
      fqn,
      "' (planner_data) names what another entry holds");
  put(container, path.back(), std::move(value));
}

c10::IValue Unflattener::get(const c10::IValue& container, const PathItem& step, const std::string& fqn) {
  if (container.isGenericDict()) {
    const c10::impl::GenericDict dict = container.toGenericDict();
    const auto found = dict.find(step_key(step));
    return found == dict.end() ? c10::IValue() : found->value();
  }
  const auto* index = std::get_if<int64_t>(&step);
  TORCH_CHECK(
      index != nullptr && *index >= 0,
      where_,
      ": the path of entry '",
      fqn,
      "' (planner_data) indexes a list with ",
      "'" + key_text(step_key(step)) + "'");
  c10::impl::GenericList list = container.toList();
  if (static_cast<uint64_t>(*index) >= list.size()) {
    const uint64_t padding = static_cast<uint64_t>(*index) + 1 - list.size();
    TORCH_CHECK(
        padding <= padding_left_,
        where_,
        ": the path of entry '",
        fqn,
        "' (planner_data) indexes a list at ",
        *index,
        ", past what the checkpoint can hold");
    padding_left_ -= padding;
    for (uint64_t i = 0; i < padding; ++i) {
      list.push_back(c10::IValue());
    }
  }
  return list.get(static_cast<size_t>(*index));
}

void Unflattener::put(const c10::IValue& container, const PathItem& step, c10::IValue value) {
  if (container.isGenericDict()) {
    container.toGenericDict().insert_or_assign(step_key(step), std::move(value));
  } else {
    container.toList().set(static_cast<size_t>(std::get<int64_t>(step)), std::move(value));
  }
}

c10::IValue Unflattener::take() {
  for (c10::impl::GenericDict& dict : dicts_) {
    settle_key_type(dict);
  }
  return std::move(root_);
}

} // namespace torch_ext::detail::dcp
