#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <torch_ext/dcp.h>

namespace torch_ext::detail::dcp {

// Throws, naming `folder`, unless `metadata` is one a reader can trust:
// dtypes torch_ext reads, chunks inside their tensor and of its rank, sizes
// whose bytes fit int64, one item for every chunk and non-tensor entry (and
// none for anything else), data files in the folder itself.
void check_metadata(const torch_ext::dcp::Metadata& metadata, const std::string& folder);

// What keeps the chunks of `entry` (inside its tensor) from covering it
// exactly once ("overlap at the offsets ..."), or nullopt when they do.
std::optional<std::string> tiling_problem(const torch_ext::dcp::TensorEntry& entry);

// Throws, naming `folder` and the key, unless the chunks of `entry` cover
// its tensor exactly once (what a whole read of it needs).
void check_tiling(const torch_ext::dcp::TensorEntry& entry, const std::string& fqn, const std::string& folder);

// The bytes of the elements of `chunk` of `entry` (checked to fit).
uint64_t chunk_bytes(const torch_ext::dcp::TensorEntry& entry, const torch_ext::dcp::Chunk& chunk);

} // namespace torch_ext::detail::dcp
