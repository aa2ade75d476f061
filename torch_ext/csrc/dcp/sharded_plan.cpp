// What a rank of a sharded save holds, and rank 0's merge of every rank's
// plan (upstream's dedup_save_plans and create_default_global_save_plan).
#include "sharded_plan.h"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <utility>

#include <c10/util/Exception.h>

#include <torch_ext/local_shards.h>

#include "torch_ext/csrc/state/state_value.h"

#include "flatten.h"
#include "metadata_check.h"
#include "metadata_entries.h"

namespace torch_ext::detail::dcp {
namespace {

using torch_ext::dcp::BytesEntry;
using torch_ext::dcp::TensorEntry;
using Kind = PlannedItem::Kind;

struct CheckOnCpu : TensorVisitor {
  void tensor(const at::Tensor& tensor) {
    TORCH_CHECK_TYPE(
        tensor.device().is_cpu(), "state_dict ", path.describe(), " is a tensor on ", tensor.device(), "; save_sharded writes CPU tensors");
  }
  void shards(const LocalShards& shards) {
    for (const Shard& shard : shards.shards()) {
      tensor(shard.tensor);
    }
  }
  KeyPath path;
};

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::Part:
      return "a LocalShards";
    case Kind::Tensor:
      return "a tensor";
    default:
      return "a non-tensor value";
  }
}

// What every rank's items of one key must agree on.
struct KeyState {
  const PlannedItem* first = nullptr;
  int64_t first_rank = 0;
  std::map<std::vector<int64_t>, std::vector<int64_t>> chunks; // offsets -> sizes
};

} // namespace

std::vector<PlannedItem> plan_items(const c10::IValue& state_dict, int64_t max_chunk_bytes) {
  CheckOnCpu check;
  visit_state(state_dict, check, check.path);
  std::vector<PlannedItem> items;
  // `tensor`, the box at `offsets` of a global tensor, in chunks of rows.
  const auto add_tensor = [&](const FlatEntry& entry, Kind kind, const at::Tensor& tensor, std::vector<int64_t> offsets,
                              const std::vector<int64_t>& global_size) {
    const auto add = [&](const at::Tensor& chunk, std::vector<int64_t> chunk_offsets) {
      items.push_back(PlannedItem{
          entry.fqn, entry.path, kind, tensor.scalar_type(), global_size, Chunk{std::move(chunk_offsets), chunk.sizes().vec()}, chunk});
    };
    const int64_t rows = tensor.dim() > 0 ? tensor.size(0) : 0;
    const auto bytes = static_cast<int64_t>(tensor.nbytes());
    if (max_chunk_bytes == 0 || bytes <= max_chunk_bytes || rows < 2) {
      add(tensor, std::move(offsets));
      return;
    }
    const int64_t rows_per_chunk = std::max<int64_t>(max_chunk_bytes / (bytes / rows), 1);
    for (int64_t row = 0; row < rows; row += rows_per_chunk) {
      std::vector<int64_t> chunk_offsets = offsets;
      chunk_offsets[0] += row;
      add(tensor.narrow(0, row, std::min(rows_per_chunk, rows - row)), std::move(chunk_offsets));
    }
  };
  for (FlatEntry& entry : flatten_state_dict(state_dict)) {
    if (const auto shards = as_local_shards(entry.value)) {
      for (const Shard& shard : shards->shards()) {
        add_tensor(entry, Kind::Part, shard.tensor, shard.offsets, shards->global_shape());
      }
    } else if (entry.value.isTensor()) {
      const at::Tensor& tensor = entry.value.toTensor();
      add_tensor(entry, Kind::Tensor, tensor, std::vector<int64_t>(static_cast<size_t>(tensor.dim()), 0), tensor.sizes().vec());
    } else {
      items.push_back(PlannedItem{std::move(entry.fqn), std::move(entry.path), Kind::Object, {}, {}, {}, entry.value});
    }
  }
  return items;
}

GlobalPlan merge_plans(const std::vector<std::vector<PlannedItem>>& plans, const std::string& folder) {
  const auto fail = [&folder](const std::string& fqn, const std::string& what) {
    TORCH_CHECK_VALUE(false, "save_sharded into '", folder, "': entry '", fqn, "' ", what);
  };
  GlobalPlan plan;
  plan.metadata.planner_data.emplace();
  std::unordered_map<std::string, KeyState> keys;
  for (size_t rank = 0; rank < plans.size(); ++rank) {
    std::vector<bool>& writes = plan.writes.emplace_back(plans[rank].size(), false);
    for (size_t i = 0; i < plans[rank].size(); ++i) {
      const PlannedItem& item = plans[rank][i];
      auto [found, added] = keys.try_emplace(item.fqn);
      KeyState& key = found->second;
      if (added) {
        key.first = &item;
        key.first_rank = static_cast<int64_t>(rank);
        if (item.kind == Kind::Object) {
          plan.metadata.state_dict_metadata.emplace_back(item.fqn, BytesEntry{});
        } else {
          TensorEntry entry;
          entry.dtype = item.dtype;
          entry.size = item.global_size;
          plan.metadata.state_dict_metadata.emplace_back(item.fqn, std::move(entry));
        }
        plan.metadata.planner_data->emplace_back(item.fqn, item.path);
      }
      const PlannedItem& first = *key.first;
      const auto ranks = [&] { return " on rank " + std::to_string(key.first_rank) + " and " + std::to_string(rank); };
      if (item.kind != first.kind) {
        fail(item.fqn, std::string("is ") + kind_name(first.kind) + " and " + kind_name(item.kind) + ranks());
      }
      if (item.path != first.path) {
        fail(item.fqn, "is the flattened key of two object paths" + ranks());
      }
      if (item.kind != Kind::Object && (item.dtype != first.dtype || item.global_size != first.global_size)) {
        fail(
            item.fqn,
            "is a " + std::string(c10::toString(first.dtype)) + " tensor of global shape " +
                c10::str(c10::IntArrayRef(first.global_size)) + " and a " + c10::toString(item.dtype) +
                " tensor of global shape " + c10::str(c10::IntArrayRef(item.global_size)) + ranks());
      }
      // The lowest rank that holds an item writes it.
      if (item.kind == Kind::Object) {
        writes[i] = added;
        continue;
      }
      const auto [chunk, new_chunk] = key.chunks.emplace(item.chunk.offsets, item.chunk.sizes);
      if (!new_chunk && chunk->second != item.chunk.sizes) {
        fail(
            item.fqn,
            "has parts that overlap at the offsets " + c10::str(c10::IntArrayRef(item.chunk.offsets)) + " (sizes " +
                c10::str(c10::IntArrayRef(chunk->second)) + " and " + c10::str(c10::IntArrayRef(item.chunk.sizes)) +
                ")" + ranks());
      }
      writes[i] = new_chunk;
    }
  }
  for (auto& [fqn, entry] : plan.metadata.state_dict_metadata) {
    auto* tensor = std::get_if<TensorEntry>(&entry);
    if (tensor == nullptr) {
      continue;
    }
    for (const auto& [offsets, sizes] : keys.at(fqn).chunks) {
      tensor->chunks.push_back(Chunk{offsets, sizes});
    }
    if (const std::optional<std::string> problem = tiling_problem(*tensor)) {
      fail(fqn, "has parts (of every rank) that do not tile its global shape " + c10::str(c10::IntArrayRef(tensor->size)) + ": they " + *problem);
    }
  }
  return plan;
}

Metadata join_results(GlobalPlan plan, const std::vector<std::string>& reports, const std::string& folder) {
  Metadata& metadata = plan.metadata;
  // The index hint of a chunk's item is the chunk's position in its entry.
  std::map<std::pair<std::string, std::vector<int64_t>>, int64_t> positions;
  for (const auto& [fqn, entry] : metadata.state_dict_metadata) {
    if (const auto* tensor = std::get_if<TensorEntry>(&entry)) {
      for (size_t i = 0; i < tensor->chunks.size(); ++i) {
        positions.emplace(std::make_pair(fqn, tensor->chunks[i].offsets), static_cast<int64_t>(i));
      }
    }
  }
  for (const std::string& report : reports) {
    for (WriteResult& result : decode_results(report)) {
      if (result.index.offset) {
        const auto found = positions.find(std::make_pair(result.index.fqn, *result.index.offset));
        TORCH_INTERNAL_ASSERT(found != positions.end(), "a rank wrote a chunk of '", result.index.fqn, "' that no plan has");
        result.index.index = found->second;
      }
      metadata.storage_data.emplace_back(std::move(result.index), std::move(result.location));
    }
  }
  finish_metadata(metadata, folder);
  check_metadata(metadata, folder);
  return std::move(metadata);
}

} // namespace torch_ext::detail::dcp
