#pragma once

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <string>
#include <vector>

#include "staging.h"

namespace torch_ext::detail {

// The writer's side of a save without max_staging_bytes: writes the
// checkpoint of `rank` in the folder `path` (durably, as write_checkpoint)
// from a StateCopy while its run() fills it, each piece once `progress` says
// it is copied, so that the write overlaps the copy. `storages` is the
// copy's storages() in the order run() fills them. Throws StagingFailed if
// it fails.
void write_while_staging(
    const std::string& path,
    int64_t rank,
    const c10::IValue& copy,
    const std::vector<c10::Storage>& storages,
    StagingProgress& progress);

} // namespace torch_ext::detail
