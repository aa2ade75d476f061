#pragma once

#include <ATen/core/ivalue.h>

#include <string>

#include <torch_ext/checkpoint_file.h>

namespace torch_ext::detail {

// Reads the checkpoint at `path` in its format (detect_format), with the
// reader of that format. Everything that reads a checkpoint from a path
// comes here.
c10::IValue read_checkpoint_path(const std::string& path, const ReadOptions& options);

} // namespace torch_ext::detail
