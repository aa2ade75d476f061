#pragma once

#include <ATen/core/ivalue.h>

#include <string>

#include <torch_ext/checkpoint_file.h>

namespace torch_ext::detail {

// Reads one torch.save file (ours or torch.save's): its archive, its pickle
// with torch's globals, then the storages of what it returns (of `keys`, if
// given) bound to their records, mapped. Errors name the file.
c10::IValue read_torch_save_file(const std::string& file, const ReadOptions& options);

} // namespace torch_ext::detail
