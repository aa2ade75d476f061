#pragma once

// The plan of a sharded save (save_sharded): what each rank holds, what
// rank 0 makes of every rank's plan, and how plans and write results travel
// through the store. What rank 0 runs is exported for the benchmark that
// runs it on synthesized ranks' messages (bench/cpp/dcp_scale_bench.cpp).

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <torch_ext/dcp.h>
#include <torch_ext/export.h>

namespace torch_ext::detail::dcp {

using torch_ext::dcp::Chunk;
using torch_ext::dcp::Metadata;
using torch_ext::dcp::ObjectPath;
using torch_ext::dcp::WriteResult;

// One item a rank holds: a part of a LocalShards, a plain tensor (whole) or
// a non-tensor value, under the flattened key `fqn`.
struct PlannedItem {
  enum class Kind : uint8_t { Part, Tensor, Object };
  std::string fqn;
  ObjectPath path;
  Kind kind = Kind::Object;
  // Of a part or a tensor: the global tensor's dtype and sizes, and the box
  // of it this item holds.
  c10::ScalarType dtype = c10::ScalarType::Undefined;
  std::vector<int64_t> global_size;
  Chunk chunk;
  // What is written: the part's tensor, the tensor or the value. Not sent.
  c10::IValue value;
};

// The items of `state_dict`, in upstream's flattening order (a LocalShards
// gives one per part), a tensor or part of more than `max_chunk_bytes`
// (when > 0) split into chunks of whole rows of at most that many bytes.
// Throws a TypeError naming the entry for what a checkpoint does not hold
// and for tensors off the CPU.
std::vector<PlannedItem> plan_items(const c10::IValue& state_dict, int64_t max_chunk_bytes);

// What rank 0 makes of every rank's items (`plans`, in rank order):
// the metadata of the save without its storage_data, and for each rank one
// flag per item, in its order: whether it writes the item (the lowest rank
// holding an item writes it). Throws a ValueError naming `folder` and the
// key for a key of two kinds, dtypes, global shapes or object paths, and
// for parts that do not tile their tensor.
struct GlobalPlan {
  Metadata metadata;
  std::vector<std::vector<bool>> writes;
};
TORCH_EXT_API GlobalPlan merge_plans(const std::vector<std::vector<PlannedItem>>& plans, const std::string& folder);

// Rank 0's commit of a save planned as `plan`: its metadata with every
// rank's write results (`reports`, encoded, in rank order) as the
// storage_data, finished and checked for commit_metadata (throws naming
// `folder` for what upstream's reader would not take).
TORCH_EXT_API Metadata join_results(GlobalPlan plan, const std::vector<std::string>& reports, const std::string& folder);

// The items of a rank as the store carries them (without their values),
// and back.
TORCH_EXT_API std::string encode_plan(const std::vector<PlannedItem>& items);
TORCH_EXT_API std::vector<PlannedItem> decode_plan(std::string_view bytes);

TORCH_EXT_API std::string encode_writes(const std::vector<bool>& writes);
std::vector<bool> decode_writes(std::string_view bytes);

TORCH_EXT_API std::string encode_results(const std::vector<WriteResult>& results);
std::vector<WriteResult> decode_results(std::string_view bytes);

} // namespace torch_ext::detail::dcp
