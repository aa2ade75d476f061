#pragma once

#include <string>

namespace torch_ext::detail {

// The formats a checkpoint on disk may be in.
enum class DiskFormat {
  TorchSave, // a zip of a pickle and its records: torch.save's, and ours
  Dcp, // DCP's standard format: a folder of .distcp files and their .metadata
  Safetensors, // a little-endian header length, a JSON header, the tensors' bytes
};

// "a torch.save file", "a DCP checkpoint (a folder holding .metadata)", ...
std::string describe_format(DiskFormat format);

// The one rule that tells the format of what is at `path`, from what is on
// disk (never from its name), for every reader:
// - a folder holding `.metadata` is DCP's;
// - a regular file whose first 8 bytes are a little-endian length that the
//   rest of the file holds, followed by '{', is safetensors';
// - any other regular file is torch.save's (a zip: its reader says what is
//   wrong with one that is not).
// Throws, naming the path and what it is, for anything else: nothing there,
// a folder without .metadata, a FIFO, a device, a socket. Blocks on nothing.
DiskFormat detect_format(const std::string& path);

} // namespace torch_ext::detail
