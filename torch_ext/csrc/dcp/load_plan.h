#pragma once

// What a resharding load (load_sharded) reads, planned from the saved
// metadata alone, before any data is read. Exported for the benchmark that
// measures it (bench/cpp/dcp_scale_bench.cpp).

#include <ATen/core/ivalue.h>

#include <string>
#include <vector>

#include <torch_ext/dcp.h>
#include <torch_ext/export.h>

#include "flatten.h"

namespace torch_ext::detail::dcp {

struct LoadPlan {
  // The regions of saved chunks that fill each tensor and part of the target.
  std::vector<torch_ext::dcp::RegionRead> reads;
  // The target's non-tensor values, which the saved ones replace.
  std::vector<FlatEntry> objects;
};

// The plan that fills `into` from the checkpoint `folder` whose metadata is
// `saved`: each box of `into` (a part of a LocalShards, or a whole tensor)
// reads where it overlaps a saved chunk. Throws the ValueErrors that
// load_sharded documents, naming `folder` and the key.
TORCH_EXT_API LoadPlan plan_load(const torch_ext::dcp::Metadata& saved, const c10::IValue& into, const std::string& folder);

} // namespace torch_ext::detail::dcp
