#pragma once

#include <optional>
#include <string>

#include <torch_ext/export.h>

namespace torch_ext::detail {

// The formats a checkpoint on disk may be in, and the folder of a training
// run's checkpoints, which holds many.
enum class DiskFormat {
  TorchSave, // a zip of a pickle and its records: torch.save's, and ours
  Dcp, // DCP's standard format: a folder of .distcp files and their .metadata
  Safetensors, // a little-endian header length, a JSON header, the tensors' bytes
  SafetensorsFolder, // Hugging Face's layout: an index and its safetensors shards
  ManagerRoot, // CheckpointManager's root: step_<n> folders of torch.save files
};

// "a torch.save file", "a DCP checkpoint (a folder holding .metadata)", ...
TORCH_EXT_API std::string describe_format(DiskFormat format);

// The one rule that tells the format of what is at `path`, from what is on
// disk (never from its name), for every reader:
// - a regular file whose first 8 bytes are a little-endian length that the
//   rest of the file holds, followed by '{', is safetensors';
// - any other regular file is torch.save's (a zip: its reader says what is
//   wrong with one that is not);
// - a folder holding `.metadata` is DCP's;
// - a folder holding a safetensors index (safetensors_index) or, without
//   one, `model.safetensors`, is Hugging Face's layout;
// - a folder holding `step_<n>` folders is a CheckpointManager root.
// Throws, naming the path and what it is, for anything else: nothing there,
// a folder with none of those or with those of two kinds (refused as
// ambiguous, naming both), a FIFO, a device, a socket. Blocks on nothing.
TORCH_EXT_API DiskFormat detect_format(const std::string& path);

// The index of Hugging Face's layout in `folder`: `model.safetensors.index.json`,
// or whatever `<name>.safetensors.index.json` the folder holds (diffusers'
// `diffusion_pytorch_model.safetensors.index.json`); nullopt if it holds
// none. Throws, naming the folder and both, if it holds two.
TORCH_EXT_API std::optional<std::string> safetensors_index(const std::string& folder);

} // namespace torch_ext::detail
