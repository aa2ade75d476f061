#pragma once

#include <ATen/core/ivalue.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <torch_ext/dcp.h>
#include <torch_ext/export.h>

namespace torch_ext::detail::dcp {

using torch_ext::dcp::ObjectPath;

// A step of an object path as a dict key: a str, or an int (a list's index).
c10::IValue step_key(const torch_ext::dcp::PathItem& step);
// The key path (key_path.h) of the first `steps` steps of `path` (all by
// default): upstream's flattened key, `".".join(map(str, path))`.
TORCH_EXT_API std::string key_path(const ObjectPath& path, size_t steps = SIZE_MAX);

// One leaf of a flattened state dict: its key, its object path (what
// planner_data records) and the value saved as one entry.
struct FlatEntry {
  std::string fqn;
  ObjectPath path;
  c10::IValue value;
};

// flatten_state_dict of upstream's _nested_dict.py: dicts always recurse
// (keys as str() prints them), a list recurses only if it holds a tensor, a
// dict or a list that recurses; anything else (tuples, lists of scalars,
// tensors, scalars) is a leaf. Empty dicts leave nothing. Throws a
// ValueError for two leaves of one key, as upstream does.
TORCH_EXT_API std::vector<FlatEntry> flatten_state_dict(const c10::IValue& state_dict);

// set_element of upstream's _traverse.py, which unflatten_state_dict and
// dcp_to_torch_save rebuild a state dict with: each path creates the dicts
// (for a str step) and lists (for an int step, padded with None) it goes
// through. Paths come from a file: a step that does not fit what is there,
// or lists padded past 64 Nones per entry (of `entries`) in all, is an
// error naming the key and `where`.
class TORCH_EXT_API Unflattener {
 public:
  Unflattener(std::string where, size_t entries);
  void set(const ObjectPath& path, c10::IValue value, const std::string& fqn);
  // The state dict, its dicts keyed by str typed Dict(str, Any).
  c10::IValue take();

 private:
  // The value at `step` of a dict or list (None if there is none yet; a
  // list is padded up to it), and its replacement.
  c10::IValue get(const c10::IValue& container, const torch_ext::dcp::PathItem& step, const std::string& fqn);
  static void put(const c10::IValue& container, const torch_ext::dcp::PathItem& step, c10::IValue value);

  std::string where_;
  uint64_t padding_left_;
  c10::IValue root_;
  std::vector<c10::impl::GenericDict> dicts_;
};

} // namespace torch_ext::detail::dcp
