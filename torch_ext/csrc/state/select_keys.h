#pragma once

#include <ATen/core/ivalue.h>

#include <string>
#include <vector>

#include <torch_ext/export.h>

namespace torch_ext::detail {

// The entries of `state` that `keys` name (ReadOptions::keys): each key is a
// path as key_path.h prints it, read against the structure (a dict key may
// hold dots itself: `model` -> `fc.weight`), a list or tuple item by its
// index. Containers keep their kind and order and hold only what was named.
// Throws a ValueError naming `file` and every key that names nothing.
TORCH_EXT_API c10::IValue select_keys(const c10::IValue& state, const std::vector<std::string>& keys, const std::string& file);

} // namespace torch_ext::detail
