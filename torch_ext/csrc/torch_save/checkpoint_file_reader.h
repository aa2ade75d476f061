#pragma once

#include <ATen/core/ivalue.h>

#include <string>

#include <torch_ext/checkpoint_file.h>

#include "archive_reader.h"

namespace torch_ext::detail {

// Reads one torch.save file (ours or torch.save's): its archive, its pickle
// with torch's globals, then the storages of what it returns (of `keys`, if
// given) bound to their records, mapped. Errors name the file.
c10::IValue read_torch_save_file(const std::string& file, const ReadOptions& options);

// The same of an archive anywhere (an item of a DCP data file): errors name
// the archive, and a key that names nothing names `where`.
c10::IValue read_torch_save_archive(const ArchiveReader& archive, const ReadOptions& options, const std::string& where);

} // namespace torch_ext::detail
