#pragma once

#include <ATen/core/ivalue.h>

#include <vector>

#include "torch_ext/csrc/format/write_plan.h"

namespace torch_ext::detail {

// What a save plans its write over, before anything is copied: a deep copy
// of `state_dict` that shares nothing with the caller's (containers keep
// their kind, OrderedDict or torch.Size), its tensors views (same offsets,
// sizes and strides) of storages that have their sizes and no data, one per
// storage of the caller's, so that tensors that shared a storage still do.
// `sources[i]` is the caller's storage that `staged[i]` stands for, both in
// the order first met. Throws a TypeError naming the entry for a value a
// checkpoint cannot hold.
struct StagingPlan {
  c10::IValue state;
  std::vector<c10::Storage> staged;
  std::vector<c10::Storage> sources;
};
StagingPlan plan_staging(const c10::IValue& state_dict);

// The caller's bytes behind `slices` of the staged storages: what the copy
// stages for a write plan made over `plan.state`.
std::vector<StorageSlice> source_slices(const StagingPlan& plan, const std::vector<StorageSlice>& slices);

} // namespace torch_ext::detail
