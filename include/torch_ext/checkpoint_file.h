#pragma once

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <string>
#include <vector>

#include <torch_ext/checkpoint_values.h>
#include <torch_ext/export.h>

namespace torch_ext {

// How a checkpoint file is read.
struct ReadOptions {
  // Check every record read against its CRC32 (torch.load checks none).
  // Off, a load touches only the bytes its tensors are read at.
  bool verify = true;
  // Empty: everything. Otherwise key paths, as errors print them: the dict
  // keys and list indices on the way to an entry, joined by dots
  // (`model.fc.weight`, `optim.state.0`, `optim.param_groups.0.lr`), each of
  // which must name an entry: the result holds those entries only, in the
  // file's nesting and order, and only their records are read.
  std::vector<std::string> keys;
};

// Writes `state_dict` to `file` in torch.save's format, so that torch.load
// (weights_only=True) and upstream DCP's CheckpointReader read it with the
// same Python types; every record carries its CRC32, and tensors that share a
// storage are written once. Durably, on the calling thread: into a temporary
// file in the same folder, fsync'd, renamed over `file`, the folder fsync'd.
// On failure it throws an error naming the file and leaves `file` as it
// was. Values are those value_kind() accepts; tensors must be on the CPU.
TORCH_EXT_API void write_checkpoint_file(const std::string& file, const c10::IValue& state_dict);

// Reads a file written by write_checkpoint_file or torch.save, running no
// code (a restricted unpickler, as torch.load(weights_only=True)). Tensors
// are views of the file mapped copy-on-write, as torch.load(mmap=True)
// gives: changing them leaves the file as it is. Tensors that shared a
// storage when saved share one again. Any damage (a flipped bit with
// `verify`, a truncation, garbage) throws an error naming the file. The
// format is told from what is on disk, never from the name, and read by its
// reader with `options`: a DCP checkpoint's folder (read_dcp_checkpoint), a
// safetensors file or a folder in Hugging Face's layout
// (read_safetensors_file, read_safetensors_folder: `keys` are tensor names).
// A CheckpointManager root is named as such, and anything but a regular
// file or a folder is refused without blocking.
TORCH_EXT_API c10::IValue read_checkpoint_file(const std::string& file, const ReadOptions& options = {});

// `<path>/checkpoint_<rank>.pt`, the file of one rank, as upstream's
// CheckpointWriter and CheckpointReader name it.
TORCH_EXT_API std::string checkpoint_file_path(const std::string& path, int64_t rank);

// write_checkpoint_file(checkpoint_file_path(path, rank)), creating the
// folder `path` if missing.
TORCH_EXT_API void write_checkpoint(const std::string& path, int64_t rank, const c10::IValue& state_dict);

// read_checkpoint_file(checkpoint_file_path(path, rank), options).
TORCH_EXT_API c10::IValue read_checkpoint(const std::string& path, int64_t rank, const ReadOptions& options = {});

} // namespace torch_ext
