#include <torch_ext/save_options.h>

#include <c10/util/Exception.h>

namespace torch_ext {

void check_save_options(const SaveOptions& options, const char* owner) {
  TORCH_CHECK_VALUE(
      options.staging_threads >= 1 && options.staging_threads <= 1024,
      owner,
      " expected 1 <= staging_threads <= 1024, got ",
      options.staging_threads);
  TORCH_CHECK_VALUE(
      options.max_staging_bytes == 0 || options.max_staging_bytes >= SaveOptions::kMinStagingBytes,
      owner,
      " expected max_staging_bytes to be 0 (no bound) or at least ",
      SaveOptions::kMinStagingBytes,
      " (1 MiB), got ",
      options.max_staging_bytes);
  TORCH_CHECK_VALUE(
      options.writer_nice >= 0 && options.writer_nice <= 19,
      owner,
      " expected 0 <= writer_nice <= 19, got ",
      options.writer_nice);
}

void check_rank_options(const RankOptions& options, const char* owner) {
  TORCH_CHECK_VALUE(
      options.world_size >= 1 && options.rank >= 0 && options.rank < options.world_size,
      owner,
      " expected 0 <= rank < world_size, got rank ",
      options.rank,
      " and world_size ",
      options.world_size);
}

void check_barrier_timeout(std::chrono::duration<double> timeout, const char* owner) {
  // Written so that NaN fails too.
  TORCH_CHECK_VALUE(timeout.count() > 0, owner, " expected barrier_timeout > 0, got ", timeout.count(), " s");
}

} // namespace torch_ext
