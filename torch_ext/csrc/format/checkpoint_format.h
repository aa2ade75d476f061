#pragma once

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <memory>
#include <string>

#include "write_plan.h"

namespace torch_ext::detail {

// The write side of an on-disk format. A checkpoint is a folder in which
// each rank writes its part; torch.save's format, one file per rank, is the
// only one implemented, and its RankWriteResult is empty. The result is
// meant for a format whose ranks' parts are joined: DCP's, where rank 0
// would write `.metadata` from every rank's result; nothing joins them yet
// (AsyncCheckpointer drops the result). A save asks the format for a plan
// of one rank's part, then streams the bytes the plan takes into its sink
// (write_plan): the save pipeline, staging and the manager know no more of
// the format than this.
class CheckpointFormat {
 public:
  virtual ~CheckpointFormat() = default;
  // Plans rank `rank`'s part of the checkpoint in `folder` from `state`, a
  // state value whose storages may have no data yet: a plan reads their
  // sizes, never their bytes, and touches no disk. Throws (a TypeError
  // naming the entry) for a value the format cannot hold.
  virtual std::unique_ptr<WritePlan> plan(const std::string& folder, int64_t rank, const c10::IValue& state) const = 0;
};

} // namespace torch_ext::detail
