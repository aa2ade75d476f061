#pragma once

// The one syntax of key paths, which say where a value sits in a state
// dict: DCP's flattened keys, ".".join(map(str, path)), with a dict key as
// Python's str() prints it and a list or tuple item by its index
// (`model.layers.1.0`, `optim.state.0.weight.exp_avg`). Every error that
// names an entry prints its path so, and ReadOptions::keys reads paths so,
// so that a path copied from an error selects its entry. A dict key may
// hold dots itself (`0.weight`, a parameter's name): a path is read against
// the structure it walks, one step at a time (read_step), never split on
// its dots. Exported for the Python module; not a public API.

#include <ATen/core/ivalue.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <torch_ext/export.h>

namespace torch_ext::detail {

// One step of a path: a dict key (a str as it is, an int, float or bool as
// Python's str() prints it), or an item's index.
TORCH_EXT_API std::string key_text(const c10::IValue& key);
TORCH_EXT_API std::string index_text(size_t index);

// A path, built step by step as a walk goes down and back up.
class TORCH_EXT_API KeyPath {
 public:
  // `root` names the value the path starts at, in describe().
  explicit KeyPath(std::string root = "state_dict");

  void push_key(const c10::IValue& key);
  void push_key(const std::string& key);
  void push_index(size_t index);
  void pop();
  size_t depth() const {
    return ends_.size();
  }
  // `model.fc.weight`; empty at the root.
  const std::string& str() const {
    return text_;
  }
  // `state_dict entry 'model.fc.weight'`, or `the state_dict` at the root:
  // the subject of an error about the value there.
  std::string describe() const;
  const std::string& root() const {
    return root_;
  }

 private:
  std::string root_;
  std::vector<size_t> ends_;
  std::string text_;
};

// How `path`, read in a container, goes through its entry `step` (a
// key_text or an index_text): not at all, to that entry, or on below it,
// with `rest` the path still to read there.
struct PathStep {
  enum Kind { kMiss, kEntry, kBelow };
  Kind kind;
  std::string_view rest;
};
TORCH_EXT_API PathStep read_step(std::string_view path, std::string_view step);

} // namespace torch_ext::detail
