#include "retention.h"

namespace torch_ext::detail {

std::vector<int64_t> steps_to_delete(
    const std::vector<int64_t>& committed,
    int64_t saved,
    const CheckpointManagerOptions& options) {
  std::vector<int64_t> deleted;
  if (!options.max_to_keep || committed.size() <= static_cast<size_t>(*options.max_to_keep)) {
    return deleted;
  }
  const size_t candidates = committed.size() - static_cast<size_t>(*options.max_to_keep);
  for (size_t i = 0; i < candidates; ++i) {
    const int64_t step = committed[i];
    const bool kept = options.keep_every_n_steps && step % *options.keep_every_n_steps == 0;
    if (!kept && step != saved && step != committed.back()) {
      deleted.push_back(step);
    }
  }
  return deleted;
}

} // namespace torch_ext::detail
