#pragma once

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <vector>

namespace torch_ext::detail {

// A deep copy of `state_dict` on the CPU that shares nothing with the
// caller's: containers keep their kind (OrderedDict, torch.Size), and every
// storage is copied once, whole, with its tensors as views of the copy (same
// offsets, sizes and strides), so tensors that shared a storage still do.
// Copied by `threads` threads (the calling one and threads - 1 more). A
// value a checkpoint cannot hold throws a TypeError naming its entry.
//
// `buffers` holds the storages of the previous copy, in the same order. One
// that nothing else references any more and has the size needed is copied
// into instead of new memory, as upstream's stager reuses its buffers: a
// checkpoint of the same model then allocates and page-faults nothing. On
// return `buffers` holds this copy's storages.
c10::IValue stage_state_dict(const c10::IValue& state_dict, int threads, std::vector<c10::Storage>& buffers);

// The copy stage_state_dict would make, without its bytes: the same values,
// with tensors as views of storages that have their sizes but no data, so
// that it can be pickled before anything is copied. `sources[i]` is the
// caller's storage that `staged[i]` stands for; both in the order first met.
// Throws as stage_state_dict does.
struct StagingPlan {
  c10::IValue state;
  std::vector<c10::Storage> staged;
  std::vector<c10::Storage> sources;
};
StagingPlan plan_staging(const c10::IValue& state_dict);

// Copies bytes [begin, begin + size) of the concatenation of `sources` into
// `destination`, with `threads` threads (the calling one and threads - 1
// more).
void copy_storage_bytes(
    const std::vector<c10::Storage>& sources,
    uint64_t begin,
    size_t size,
    void* destination,
    int threads);

} // namespace torch_ext::detail
