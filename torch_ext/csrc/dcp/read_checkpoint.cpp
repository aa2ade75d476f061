// read_dcp_checkpoint: what dcp_to_torch_save then torch.load give
// (_EmptyStateDictLoadPlanner's rebuild of the state dict from the
// metadata), without Python.
#include <torch_ext/dcp.h>

#include <string_view>
#include <unordered_map>
#include <utility>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "torch_ext/csrc/state/key_path.h"
#include "torch_ext/csrc/state/select_keys.h"

#include "flatten.h"
#include "metadata_check.h"

namespace torch_ext {
namespace {

using dcp::CheckpointReader;
using dcp::ItemIndex;
using dcp::ObjectPath;

// Whether the entry at `path` is to be read for `keys`: a key names it or
// one of the containers it is in, or (for a non-tensor value, which may be a
// container itself) something inside it. Keys are read step by step against
// the path (read_step), as keys= reads them everywhere.
bool wanted(const ObjectPath& path, bool is_object, const std::vector<std::string>& keys) {
  for (const std::string& key : keys) {
    std::string_view rest = key;
    bool below = true;
    for (size_t i = 0; i < path.size() && below; ++i) {
      const detail::PathStep step = detail::read_step(rest, detail::key_text(detail::dcp::step_key(path[i])));
      if (step.kind == detail::PathStep::kEntry) {
        return true;
      }
      below = step.kind == detail::PathStep::kBelow;
      rest = step.rest;
    }
    if (below && is_object) {
      return true;
    }
  }
  return false;
}

// A whole tensor: the saved chunk itself if it is the whole tensor (a view
// of the mapped file), else a tensor its chunks are to be copied into, by
// the reads added to `reads`.
at::Tensor whole_tensor(
    const CheckpointReader& reader,
    const std::string& fqn,
    const dcp::TensorEntry& entry,
    std::vector<dcp::RegionRead>& reads) {
  detail::dcp::check_tiling(entry, fqn, reader.folder());
  if (entry.chunks.size() == 1 && entry.chunks[0].sizes == entry.size) {
    return reader.read_tensor(ItemIndex{fqn, entry.chunks[0].offsets, 0});
  }
  at::Tensor whole = at::empty(entry.size, at::TensorOptions().dtype(entry.dtype));
  for (size_t i = 0; i < entry.chunks.size(); ++i) {
    const dcp::Chunk& chunk = entry.chunks[i];
    at::Tensor region = whole;
    for (size_t d = 0; d < chunk.offsets.size(); ++d) {
      region = region.narrow(static_cast<int64_t>(d), chunk.offsets[d], chunk.sizes[d]);
    }
    reads.push_back(dcp::RegionRead{
        ItemIndex{fqn, chunk.offsets, static_cast<int64_t>(i)},
        std::vector<int64_t>(chunk.offsets.size(), 0),
        chunk.sizes,
        std::move(region)});
  }
  return whole;
}

c10::IValue read_entry(const CheckpointReader& reader, const std::string& fqn, const dcp::Entry& entry) {
  if (const auto* tensor = std::get_if<dcp::TensorEntry>(&entry)) {
    std::vector<dcp::RegionRead> reads;
    at::Tensor whole = whole_tensor(reader, fqn, *tensor, reads);
    reader.read_regions_into(reads);
    return whole;
  }
  return reader.read_object(ItemIndex{fqn, std::nullopt, std::nullopt});
}

} // namespace

c10::impl::GenericDict read_dcp_entries(const std::string& path, const std::vector<std::string>& fqns, bool verify) {
  const CheckpointReader reader(path, verify);
  std::unordered_map<std::string, const dcp::Entry*> entries;
  for (const auto& [fqn, entry] : reader.metadata().state_dict_metadata) {
    entries.emplace(fqn, &entry);
  }
  c10::impl::GenericDict result(c10::StringType::get(), c10::AnyType::get());
  for (const std::string& fqn : fqns) {
    const auto found = entries.find(fqn);
    TORCH_CHECK_VALUE(found != entries.end(), "the DCP checkpoint '", path, "' has no entry '", fqn, "'");
    result.insert(fqn, read_entry(reader, fqn, *found->second));
  }
  return result;
}

c10::IValue read_dcp_checkpoint(const std::string& path, const ReadOptions& options) {
  const CheckpointReader reader(path, options.verify);
  const dcp::Metadata& metadata = reader.metadata();
  std::unordered_map<std::string, const ObjectPath*> paths;
  if (metadata.planner_data) {
    for (const auto& [fqn, object_path] : *metadata.planner_data) {
      paths.emplace(fqn, &object_path);
    }
  }
  std::vector<dcp::RegionRead> reads;
  detail::dcp::Unflattener state("the DCP checkpoint '" + path + "'", metadata.state_dict_metadata.size());
  for (const auto& [fqn, entry] : metadata.state_dict_metadata) {
    // An entry that planner_data does not know is a key of the state dict.
    const auto found = paths.find(fqn);
    const ObjectPath object_path = found != paths.end() ? *found->second : ObjectPath{fqn};
    const auto* tensor = std::get_if<dcp::TensorEntry>(&entry);
    if (!options.keys.empty() && !wanted(object_path, tensor == nullptr, options.keys)) {
      continue;
    }
    c10::IValue value = tensor != nullptr ? c10::IValue(whole_tensor(reader, fqn, *tensor, reads))
                                          : reader.read_object(ItemIndex{fqn, std::nullopt, std::nullopt});
    state.set(object_path, std::move(value), fqn);
  }
  // The chunks of tensors saved in several (by several ranks), together.
  reader.read_regions_into(reads);
  c10::IValue result = state.take();
  if (!options.keys.empty()) {
    result = detail::select_keys(result, options.keys, path);
  }
  return result;
}

} // namespace torch_ext
