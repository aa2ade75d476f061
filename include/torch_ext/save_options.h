#pragma once

#include <cstdint>

namespace torch_ext {

// How a save is staged and written, for AsyncCheckpointer and
// CheckpointManager alike: the one statement of these options and their
// defaults; their bounds are checked where the save threads start, for both.
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

} // namespace torch_ext
