#pragma once

#include <chrono>
#include <cstdint>

#include <torch_ext/export.h>

namespace torch_ext {

// How a save is staged and written, for AsyncCheckpointer and
// CheckpointManager alike: the one statement of these options, their
// defaults (here), their names in Python and TorchScript
// (visit_save_options) and their bounds (check_save_options). The bindings
// take all three from here: an option added here needs no change in them.
struct SaveOptions {
  // Threads that copy the tensors of one save, in [1, 1024].
  int64_t staging_threads = 1;
  // Bytes of staging memory a save may hold: 0 for no bound (the default),
  // else at least kMinStagingBytes. Without a bound the whole state dict is
  // copied at once and the copy kept for the next save. With one, two
  // buffers of max_staging_bytes / 2 are kept and a save stages and writes
  // in waves: the stager fills a buffer while the writer writes the other,
  // so that a state dict of any size is staged with that memory, into the
  // same file. stage_future then completes once the last wave is staged,
  // that is once all but the last two waves are written.
  int64_t max_staging_bytes = 0;
  static constexpr int64_t kMinStagingBytes = int64_t{1} << 20;
  // The nice value of the writer thread, in [0, 19] (Linux; elsewhere
  // ignored). Above 0 the writer (CRC32s and write()) takes the CPU that the
  // training loop and the staging, which the caller waits for, leave free:
  // on a busy machine a save then takes longer to be durable, and the loop
  // runs as fast as without it. 0 shares the CPU evenly with them.
  int64_t writer_nice = 10;
};

// Calls visit(name, field) for each option of SaveOptions, `field` a
// pointer to its member: the keyword argument `name` of the Python and
// TorchScript constructors sets it, and defaults to a default SaveOptions'.
template <class Visit>
void visit_save_options(Visit&& visit) {
  visit("staging_threads", &SaveOptions::staging_threads);
  visit("max_staging_bytes", &SaveOptions::max_staging_bytes);
  visit("writer_nice", &SaveOptions::writer_nice);
}

// Throws a ValueError naming `owner` (AsyncCheckpointer, CheckpointManager)
// and the option unless every option of `options` is within its bounds.
TORCH_EXT_API void check_save_options(const SaveOptions& options, const char* owner);

// Which of the job's ranks a process is, for AsyncCheckpointer and
// CheckpointManager alike: 0 <= rank < world_size (check_rank_options).
struct RankOptions {
  int64_t rank = 0;
  int64_t world_size = 1;
};

// Throws a ValueError naming `owner` unless 0 <= rank < world_size.
TORCH_EXT_API void check_rank_options(const RankOptions& options, const char* owner);

// How long a rank waits for the others at a barrier unless told otherwise
// (CheckpointManagerOptions::barrier_timeout, TorchScript's and Python's
// barrier_timeout_secs).
inline constexpr std::chrono::milliseconds kDefaultBarrierTimeout = std::chrono::minutes(10);

// Throws a ValueError naming `owner` unless `timeout` > 0. In seconds, so
// that the bindings check Python's barrier_timeout_secs before converting it.
TORCH_EXT_API void check_barrier_timeout(std::chrono::duration<double> timeout, const char* owner);

} // namespace torch_ext
