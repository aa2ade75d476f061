#pragma once

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include <torch_ext/future_utils.h>
#include <torch_ext/save_options.h>

#include "serial_executor.h"

namespace torch_ext::detail {

// The part of a save that failed.
enum class SavePhase { kStaging, kWriting };

// The threads that save state dicts, for AsyncCheckpointer and
// CheckpointManager alike: a stager, which copies a state dict off the
// caller's tensors (waiting first for the work queued on their devices),
// and a writer, which writes the copy durably while it is made. Saves run
// one after another, in the order posted; the staging memory is kept for the
// next save.
class SavePipeline {
 public:
  // Called on the writer thread once a save is over: with a null error when
  // its file is durable, else with the error and the part that failed. Must
  // not throw.
  using Finish = std::function<void(std::exception_ptr error, SavePhase failed)>;

  // `options` are checked by the owner (check_save_options); `who` names it
  // in the log.
  SavePipeline(const SaveOptions& options, const char* who);
  ~SavePipeline(); // close()
  SavePipeline(const SavePipeline&) = delete;
  SavePipeline& operator=(const SavePipeline&) = delete;

  // Saves `state_dict` as `rank`'s file in `folder` and returns at once:
  // `staged` completes (with None, or fails) on the stager thread once the
  // caller's tensors may change; then `finish` runs on the writer thread.
  void save(std::string folder, int64_t rank, c10::IValue state_dict, FuturePtr staged, Finish finish);
  // Runs `task`, which must not throw, on the writer thread after what was
  // posted before it.
  void post_to_writer(std::function<void()> task);
  // Runs what was posted, then stops the threads and frees the staging
  // memory. Not from a task of the pipeline.
  void close();

 private:
  struct Save;
  void stage_whole(const Save& save);
  void stage_in_waves(const Save& save);
  // On the writer thread: `write`, then `finish` with its outcome.
  template <typename Write>
  static void finish_after(const Save& save, Write&& write) noexcept;
  void fail_staging(const Save& save, std::exception_ptr error);
  std::vector<char*> wave_buffers();

  const SaveOptions options_;
  const char* const who_;
  // Used on the stager thread only: the copy of the last save, or the wave
  // buffers with max_staging_bytes.
  std::vector<c10::Storage> staging_buffers_;
  std::vector<c10::DataPtr> waves_;
  SerialExecutor stager_;
  SerialExecutor writer_;
};

} // namespace torch_ext::detail
