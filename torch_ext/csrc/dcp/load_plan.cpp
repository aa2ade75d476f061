// A resharding load's plan (upstream's create_default_local_load_plan): each
// target box reads the regions of the saved chunks it overlaps.
#include "load_plan.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

#include <c10/util/Exception.h>

#include <torch_ext/local_shards.h>

#include "torch_ext/csrc/state/key_path.h"
#include "torch_ext/csrc/state/state_value.h"

#include "metadata_check.h"

namespace torch_ext::detail::dcp {
namespace {

using torch_ext::dcp::Chunk;
using torch_ext::dcp::Entry;
using torch_ext::dcp::ItemIndex;
using torch_ext::dcp::Metadata;
using torch_ext::dcp::RegionRead;
using torch_ext::dcp::TensorEntry;

// Takes what a target may hold: tensors and LocalShards (on any device).
struct CheckTarget : TensorVisitor {
  void tensor(const at::Tensor& /*tensor*/) {}
  void shards(const LocalShards& /*shards*/) {}
  KeyPath path;
};

// A box of the target: `tensor` holds the global tensor's elements from
// `offsets` on.
struct TargetBox {
  at::Tensor tensor;
  std::vector<int64_t> offsets;
};

// The reads that fill `box` from the saved chunks of `entry`, which tile
// the tensor: where a chunk S and the box L meet, in every dim
// lo = max(L, S), hi = min(L + size, S + size); S is read from lo - S,
// into L at lo - L.
void add_reads(const std::string& fqn, const TensorEntry& entry, const TargetBox& box, std::vector<RegionRead>& reads) {
  for (size_t i = 0; i < entry.chunks.size(); ++i) {
    const Chunk& chunk = entry.chunks[i];
    std::vector<int64_t> storage_offsets(chunk.offsets.size());
    std::vector<int64_t> lengths(chunk.offsets.size());
    at::Tensor destination = box.tensor;
    bool meets = true;
    for (size_t d = 0; d < chunk.offsets.size() && meets; ++d) {
      const int64_t lo = std::max(box.offsets[d], chunk.offsets[d]);
      const int64_t hi = std::min(box.offsets[d] + box.tensor.size(static_cast<int64_t>(d)), chunk.offsets[d] + chunk.sizes[d]);
      meets = lo < hi;
      storage_offsets[d] = lo - chunk.offsets[d];
      lengths[d] = hi - lo;
      if (meets) {
        destination = destination.narrow(static_cast<int64_t>(d), lo - box.offsets[d], hi - lo);
      }
    }
    if (meets) {
      reads.push_back(RegionRead{ItemIndex{fqn, chunk.offsets, static_cast<int64_t>(i)}, std::move(storage_offsets), std::move(lengths), std::move(destination)});
    }
  }
}

} // namespace

LoadPlan plan_load(const Metadata& saved_metadata, const c10::IValue& into, const std::string& folder) {
  CheckTarget check;
  detail::visit_state(into, check, check.path);
  std::unordered_map<std::string, const Entry*> saved;
  for (const auto& [fqn, entry] : saved_metadata.state_dict_metadata) {
    saved.emplace(fqn, &entry);
  }
  const auto fail = [&folder](const std::string& fqn, const std::string& what) {
    TORCH_CHECK_VALUE(false, "load_sharded from the DCP checkpoint '", folder, "': entry '", fqn, "' ", what);
  };
  LoadPlan plan;
  for (FlatEntry& entry : flatten_state_dict(into)) {
    const auto found = saved.find(entry.fqn);
    if (found == saved.end()) {
      fail(entry.fqn, "is in the target but not in the checkpoint");
    }
    const auto* tensor = std::get_if<TensorEntry>(found->second);
    const auto shards = as_local_shards(entry.value);
    const bool is_tensor = shards || entry.value.isTensor();
    if (!is_tensor) {
      if (tensor != nullptr) {
        fail(entry.fqn, "is a tensor in the checkpoint and a non-tensor value in the target");
      }
      plan.objects.push_back(std::move(entry));
      continue;
    }
    if (tensor == nullptr) {
      fail(entry.fqn, "is a non-tensor value in the checkpoint and a tensor in the target");
    }
    std::vector<TargetBox> boxes;
    if (shards) {
      for (const Shard& shard : shards->shards()) {
        boxes.push_back(TargetBox{shard.tensor, shard.offsets});
      }
    } else {
      const at::Tensor& whole = entry.value.toTensor();
      boxes.push_back(TargetBox{whole, std::vector<int64_t>(static_cast<size_t>(whole.dim()), 0)});
    }
    const c10::ScalarType dtype = boxes.front().tensor.scalar_type();
    const std::vector<int64_t> global_shape = shards ? shards->global_shape() : entry.value.toTensor().sizes().vec();
    if (dtype != tensor->dtype || global_shape != tensor->size) {
      fail(
          entry.fqn,
          "is a " + std::string(c10::toString(tensor->dtype)) + " tensor of global shape " +
              c10::str(c10::IntArrayRef(tensor->size)) + " in the checkpoint and a " + c10::toString(dtype) +
              " tensor of global shape " + c10::str(c10::IntArrayRef(global_shape)) + " in the target");
    }
    check_tiling(*tensor, entry.fqn, folder);
    for (const TargetBox& box : boxes) {
      add_reads(entry.fqn, *tensor, box, plan.reads);
    }
  }
  return plan;
}

} // namespace torch_ext::detail::dcp
