#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace torch_ext::detail {

// Hugging Face's sharded layout: the shards' names and the index that maps
// each tensor to its shard, as huggingface_hub writes them.

// `model-00002-of-00005.safetensors` for shard 1 of 5 (counted from 0).
std::string shard_name(size_t shard, size_t shards);
// Whether `name` is a file of the layout: the index, `model.safetensors` or a shard.
bool is_layout_file(const std::string& name);

struct Index {
  // tensor -> shard file, by tensor name
  std::vector<std::pair<std::string, std::string>> weight_map;
  // `metadata`: each value as JSON text; total_size among them
  std::vector<std::pair<std::string, std::string>> metadata;
  std::optional<uint64_t> total_size;
};

// Parses the index file `file` (at most 100,000,000 bytes of UTF-8 JSON, no
// key twice, shallow): a `weight_map` object of str to plain file names
// (no folder, no `..`) and an optional `metadata` object. Throws a
// c10::Error naming `file` otherwise.
Index read_index(const std::string& file);

// The index's text as huggingface_hub writes it (json.dump, indent 2):
// `metadata` with total_size first, then `weight_map`.
std::string index_text(uint64_t total_size, const std::vector<std::pair<std::string, std::string>>& metadata,
                       const std::vector<std::pair<std::string, std::string>>& weight_map);

} // namespace torch_ext::detail
