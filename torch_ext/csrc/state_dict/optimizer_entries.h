#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <unordered_set>
#include <vector>

#include "torch_ext/csrc/state/key_path.h"

namespace torch_ext::detail {

using Dict = c10::impl::GenericDict;

// A dict of str to any value, as the optimizer state dict's dicts are.
Dict new_dict();

// For a hyperparameter whose Python default is the int 0 (weight_decay,
// momentum, ...): 0 is written as that int, so that the dict of an optimizer
// built with defaults equals Python's, types included; any other value as a
// float.
c10::IValue zero_as_int(double value);

// Python keeps an optimizer's step as a float32 0-dim tensor (exact up to
// 2**24 steps, in Python too); libtorch as an int64 count.
at::Tensor step_tensor(int64_t step);

// One dict of a loaded optimizer state dict: reads its entries by name,
// checking each one's type, and names the entry by its key path from the
// top in every error (`optim_state_dict entry 'param_groups.0.betas'`).
class Entries {
 public:
  Entries(const c10::IValue& value, KeyPath path);

  const KeyPath& path() const {
    return path_;
  }
  KeyPath path(const std::string& key) const;
  std::vector<std::string> keys() const;

  // The entry `key`; an error if it is missing.
  const c10::IValue& at(const std::string& key);
  double number(const std::string& key);                   // a float or an int
  bool flag(const std::string& key);                       // a bool
  std::tuple<double, double> pair(const std::string& key); // a tuple (or list) of two numbers
  int64_t step(const std::string& key);                    // a whole, non-negative number or 0-dim tensor
  // A copy of the tensor `key`, in `param`'s dtype and on its device (as
  // Python's Optimizer.load_state_dict converts state); its shape must be
  // `param`'s. has_tensor: present and not None.
  at::Tensor tensor(const std::string& key, const at::Tensor& param);
  bool has_tensor(const std::string& key) const;

  // A hyperparameter Python has and libtorch lacks: absent (an older
  // Python's dict) or `supported`, the value libtorch behaves as. `hint` ends
  // the error.
  void python_only(const std::string& key, bool supported, const char* optimizer, const char* hint = "");
  // foreach or fused: None or a bool. They pick Python's kernels, not the
  // update it computes.
  void kernel_choice(const std::string& key);
  // Accepts `key` whatever its value, if present.
  void ignore(const std::string& key);

  // An error naming the first entry nothing read: one that `reader` (as in
  // "libtorch's Adam") does not have.
  void check_all_read(const std::string& reader) const;

 private:
  Dict dict_;
  KeyPath path_;
  std::unordered_set<std::string> read_;
};

} // namespace torch_ext::detail
