#pragma once

#include <c10/core/Storage.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <vector>

#include <torch_ext/export.h>

#include "torch_ext/csrc/format/write_plan.h"

namespace torch_ext::detail {

// What the writer of a save throws when the copy it writes failed: the
// copy's error, told apart from a failure of the write itself.
struct StagingFailed {
  std::exception_ptr error;
};

// Part of a save's staging: the bytes of `source`, on any device, copied to
// `destination` on the CPU.
struct CopyJob {
  StorageSlice source;
  char* destination = nullptr;
};

// The copy engine: copies `jobs` with `threads` threads (the calling one and
// threads - 1 more, never the intra-op pool that the training loop uses),
// bytes on the CPU in pieces that the threads share, a device's in one copy
// per job. Each time the bytes copied from the start of the jobs'
// concatenation grow, `copied` (if given) is told their number, under a
// lock. Throws the first error once every thread has stopped.
void copy_bytes(const std::vector<CopyJob>& jobs, int threads, const std::function<void(uint64_t)>& copied = nullptr);

// A test seam: `observer`, unless null, is called on the copying thread
// before each piece is copied, with the source's storage and the piece's
// bytes in it. Set it while no save runs.
using CopyObserver = void (*)(const c10::StorageImpl* source, uint64_t offset, uint64_t size);
TORCH_EXT_API void observe_copies_for_testing(CopyObserver observer);

} // namespace torch_ext::detail
