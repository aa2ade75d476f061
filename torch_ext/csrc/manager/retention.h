#pragma once

#include <cstdint>
#include <vector>

#include <torch_ext/checkpoint_manager.h>
#include <torch_ext/export.h>

namespace torch_ext::detail {

// The committed steps that retention deletes, ascending, given every
// committed step (`committed`, ascending) and the step just saved: all but
// the newest max_to_keep, sparing the multiples of keep_every_n_steps, the
// latest step and `saved`.
TORCH_EXT_API std::vector<int64_t> steps_to_delete(
    const std::vector<int64_t>& committed,
    int64_t saved,
    const CheckpointManagerOptions& options);

} // namespace torch_ext::detail
