#pragma once

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <string>

#include <torch_ext/export.h>

namespace torch_ext {

// `<path>/checkpoint_<rank>.pt`, the file of one rank, as upstream's
// CheckpointWriter and CheckpointReader name it.
TORCH_EXT_API std::string checkpoint_file_path(
    const std::string& path,
    int64_t rank);

// Writes `state_dict` to checkpoint_file_path(path, rank) in torch.save's zip
// format (as with torch.serialization.set_crc32_options(False): torch.load
// reads it, unzip warns about the CRC32s), durably, on the calling thread: into a temporary file in the same
// folder (created if missing), fsync'd, renamed over the previous file, the
// folder fsync'd. On failure it throws an error naming the file, removes the
// temporary file and leaves the previous checkpoint as it was. Tensors must be
// on the CPU; values are those AsyncCheckpointer::save accepts.
TORCH_EXT_API void write_checkpoint(
    const std::string& path,
    int64_t rank,
    const c10::IValue& state_dict);

// Reads checkpoint_file_path(path, rank), written by write_checkpoint or by
// torch.save, onto the CPU.
TORCH_EXT_API c10::IValue read_checkpoint(
    const std::string& path,
    int64_t rank);

} // namespace torch_ext
