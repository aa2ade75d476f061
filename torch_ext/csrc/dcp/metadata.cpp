#include <torch_ext/dcp.h>

#include <algorithm>
#include <map>
#include <optional>
#include <unordered_set>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/state/checkpoint_dtypes.h"

#include "metadata_check.h"

namespace torch_ext::detail::dcp {
namespace {

using namespace torch_ext::dcp;

// The product of `sizes` times `item_size`, or nullopt past INT64_MAX.
std::optional<uint64_t> product(const std::vector<int64_t>& sizes, uint64_t item_size) {
  uint64_t total = item_size;
  for (const int64_t size : sizes) {
    if (size < 0) {
      return std::nullopt;
    }
    if (size != 0 && total > static_cast<uint64_t>(INT64_MAX) / static_cast<uint64_t>(size)) {
      return std::nullopt;
    }
    total *= static_cast<uint64_t>(size);
  }
  return total;
}

bool overlap(const Chunk& a, const Chunk& b) {
  for (size_t d = 0; d < a.offsets.size(); ++d) {
    if (a.offsets[d] >= b.offsets[d] + b.sizes[d] || b.offsets[d] >= a.offsets[d] + a.sizes[d]) {
      return false;
    }
  }
  return true;
}

} // namespace

void check_metadata(const Metadata& metadata, const std::string& folder) {
  const auto fail = [&](const std::string& fqn, const std::string& what) {
    TORCH_CHECK(false, "the DCP checkpoint '", folder, "' has a .metadata that does not hold: entry '", fqn, "' ", what);
  };
  std::map<std::pair<std::string, std::optional<std::vector<int64_t>>>, bool> expected; // item -> seen
  std::unordered_set<std::string> fqns;
  for (const auto& [fqn, entry] : metadata.state_dict_metadata) {
    if (!fqns.insert(fqn).second) {
      fail(fqn, "is listed twice");
    }
    const auto* tensor = std::get_if<TensorEntry>(&entry);
    if (tensor == nullptr) {
      expected.emplace(std::make_pair(fqn, std::nullopt), false);
      continue;
    }
    if (!is_checkpoint_dtype(tensor->dtype)) {
      fail(fqn, "has the dtype " + std::string(c10::toString(tensor->dtype)) + ", which torch_ext does not read");
    }
    if (!product(tensor->size, c10::elementSize(tensor->dtype))) {
      fail(fqn, "has sizes whose bytes do not fit int64");
    }
    for (const Chunk& chunk : tensor->chunks) {
      bool inside = chunk.offsets.size() == tensor->size.size() && chunk.sizes.size() == tensor->size.size();
      for (size_t d = 0; inside && d < chunk.offsets.size(); ++d) {
        inside = chunk.offsets[d] >= 0 && chunk.sizes[d] >= 0 && chunk.offsets[d] <= tensor->size[d] &&
            chunk.sizes[d] <= tensor->size[d] - chunk.offsets[d];
      }
      if (!inside) {
        fail(fqn, "has a chunk that lies outside its tensor of sizes " + c10::str(c10::IntArrayRef(tensor->size)));
      }
      if (!expected.emplace(std::make_pair(fqn, chunk.offsets), false).second) {
        fail(fqn, "has two chunks at the offsets " + c10::str(c10::IntArrayRef(chunk.offsets)));
      }
    }
  }
  for (const auto& [index, location] : metadata.storage_data) {
    const auto found = expected.find(std::make_pair(index.fqn, index.offset));
    if (found == expected.end()) {
      fail(index.fqn, "has an item that no chunk of its entry (if any) describes");
    }
    found->second = true;
    const std::string& name = location.relative_path;
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
        name.find('\0') != std::string::npos) {
      fail(index.fqn, "is stored in '" + name + "', which is not a file in the checkpoint's folder");
    }
    if (location.offset > static_cast<uint64_t>(INT64_MAX) || location.length > static_cast<uint64_t>(INT64_MAX) - location.offset) {
      fail(index.fqn, "has an item whose offset and length do not fit int64");
    }
  }
  for (const auto& [item, seen] : expected) {
    if (!seen) {
      fail(item.first, "has no item in storage_data for one of its chunks");
    }
  }
}

std::optional<std::string> tiling_problem(const TensorEntry& entry) {
  uint64_t covered = 0;
  for (const Chunk& chunk : entry.chunks) {
    covered += *product(chunk.sizes, 1);
  }
  if (covered != *product(entry.size, 1)) {
    return "hold " + std::to_string(covered) + " elements of its " + std::to_string(*product(entry.size, 1));
  }
  if (entry.size.empty() || entry.chunks.size() < 2) {
    return std::nullopt;
  }
  // A sweep along dim 0, as upstream validates a save plan: only chunks
  // whose rows meet are compared.
  std::vector<const Chunk*> sorted;
  for (const Chunk& chunk : entry.chunks) {
    sorted.push_back(&chunk);
  }
  std::sort(sorted.begin(), sorted.end(), [](const Chunk* a, const Chunk* b) { return a->offsets < b->offsets; });
  std::vector<const Chunk*> active;
  for (const Chunk* chunk : sorted) {
    active.erase(
        std::remove_if(
            active.begin(),
            active.end(),
            [&](const Chunk* other) { return other->offsets[0] + other->sizes[0] <= chunk->offsets[0]; }),
        active.end());
    for (const Chunk* other : active) {
      if (overlap(*chunk, *other) && *product(chunk->sizes, 1) > 0 && *product(other->sizes, 1) > 0) {
        return "overlap at the offsets " + c10::str(c10::IntArrayRef(other->offsets)) + " and " +
            c10::str(c10::IntArrayRef(chunk->offsets));
      }
    }
    active.push_back(chunk);
  }
  return std::nullopt;
}

void check_tiling(const TensorEntry& entry, const std::string& fqn, const std::string& folder) {
  if (const std::optional<std::string> problem = tiling_problem(entry)) {
    TORCH_CHECK(false, "the DCP checkpoint '", folder, "' cannot give entry '", fqn, "' whole: its chunks ", *problem);
  }
}

uint64_t chunk_bytes(const TensorEntry& entry, const Chunk& chunk) {
  return *product(chunk.sizes, c10::elementSize(entry.dtype));
}

} // namespace torch_ext::detail::dcp
