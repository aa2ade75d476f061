#pragma once

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch_ext/export.h>
#include <torch_ext/future_utils.h>
#include <torch_ext/save_options.h>

#include "torch_ext/csrc/format/checkpoint_format.h"

#include "serial_executor.h"

namespace torch_ext::detail {

// The part of a save that failed.
enum class SavePhase { kStaging, kWriting };

// The threads that save state dicts, for AsyncCheckpointer and
// CheckpointManager alike, through a format: a stager, which plans the write
// (CheckpointFormat::plan) and copies the bytes the plan takes off the
// caller's tensors (waiting first for the work queued on their devices),
// whole or in waves, and a writer, which streams them into the plan's sink
// while they are copied. Saves run one after another, in the order posted;
// the staging memory is kept for the next save.
class TORCH_EXT_API SavePipeline {
 public:
  // Called on the writer thread once a save is over: with a null error and
  // what the format reports of the write once it is durable, else with the
  // error and the part that failed. Must not throw.
  using Finish = std::function<void(std::exception_ptr error, SavePhase failed, RankWriteResult result)>;

  // `options` are checked by the owner (check_save_options); `who` names it
  // in the log. Saves write in `format`.
  SavePipeline(const SaveOptions& options, const char* who, std::shared_ptr<const CheckpointFormat> format);
  ~SavePipeline(); // close()
  SavePipeline(const SavePipeline&) = delete;
  SavePipeline& operator=(const SavePipeline&) = delete;

  // Saves `state_dict` as `rank`'s part of the checkpoint in `folder` and
  // returns at once: `staged` completes (with None, or fails) on the stager
  // thread once the caller's tensors may change; then `finish` runs on the
  // writer thread.
  void save(std::string folder, int64_t rank, c10::IValue state_dict, FuturePtr staged, Finish finish);
  // Runs `task`, which must not throw, on the writer thread after what was
  // posted before it.
  void post_to_writer(std::function<void()> task);
  // Runs what was posted, then stops the threads and frees the staging
  // memory. Not from a task of the pipeline.
  void close();

 private:
  struct Save;
  struct Planned;
  Planned plan(const Save& save) const;
  void stage_whole(const Save& save, Planned planned);
  void stage_in_waves(const Save& save, Planned planned);
  // On the writer thread: `write`, then `finish` with its outcome.
  template <typename Write>
  static void finish_after(const Save& save, Write&& write) noexcept;
  void fail_staging(const Save& save, std::exception_ptr error);
  std::vector<char*> wave_buffers();

  const SaveOptions options_;
  const char* const who_;
  const std::shared_ptr<const CheckpointFormat> format_;
  // Used on the stager thread only: the buffers of the last whole save, or
  // the wave buffers with max_staging_bytes.
  std::vector<c10::Storage> staging_buffers_;
  std::vector<c10::DataPtr> waves_;
  SerialExecutor stager_;
  SerialExecutor writer_;
};

} // namespace torch_ext::detail
