#pragma once

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include <torch_ext/checkpoint_file.h>
#include <torch_ext/export.h>
#include <torch_ext/future_utils.h>
#include <torch_ext/save_options.h>

namespace torch_ext {

// Waits until every rank reaches it, or throws. Called on the writer thread
// after this rank's file is durably written, as upstream's CheckpointWriter
// calls its Barrier.
class TORCH_EXT_API Barrier {
 public:
  virtual ~Barrier() = default;
  virtual void execute_barrier() = 0;
};

// The checkpointer's options: those of every save (SaveOptions), its rank
// (RankOptions) and its barrier. Their defaults and bounds are stated in
// <torch_ext/save_options.h>, and checked by AsyncCheckpointer's
// constructor; TorchScript and Python take them from there.
struct AsyncCheckpointerOptions : SaveOptions, RankOptions {
  // Without one, write_future completes when this rank's file is written.
  std::shared_ptr<Barrier> barrier;
};

// Asynchronous checkpoints in the layout and format of upstream's
// torch.distributed.checkpoint._experimental CheckpointWriter: one file per
// rank, `<path>/checkpoint_<rank>.pt`, in torch.save's zip format, which
// torch.load and upstream's CheckpointReader read, whole or partially.
//
//   torch_ext::AsyncCheckpointer checkpointer;
//   auto [staged, written] = checkpointer.save("ckpt/step_100", state_dict);
//   staged->waitAndThrow();   // the tensors may change from here on
//   ...
//   written->waitAndThrow();  // durably on disk (and every rank's, with a barrier)
//
// Thread-safe: save, load and close may be called from any thread.
class TORCH_EXT_API AsyncCheckpointer {
 public:
  explicit AsyncCheckpointer(AsyncCheckpointerOptions options = {});
  ~AsyncCheckpointer(); // close()
  AsyncCheckpointer(const AsyncCheckpointer&) = delete;
  AsyncCheckpointer& operator=(const AsyncCheckpointer&) = delete;

  // `state_dict` is a dict of the values a checkpoint holds (value_kind() in
  // <torch_ext/checkpoint_values.h>): a model's, an optimizer's, nested.
  // First waits for the previous save's write and rethrows its error (once,
  // without starting this save), as upstream does. Then returns at once:
  // - stage_future (NoneType): completes when the tensors are copied on a
  //   background thread, after which the caller may change them; fails with
  //   the staging error (an unsupported value, for example). The copy's
  //   memory is kept until close() and reused by the next save of storages
  //   of the same sizes, as upstream's stager keeps its buffers. With
  //   max_staging_bytes, the copy is made in waves that wait for the writer:
  //   stage_future completes after the last wave is staged, and fails with
  //   the write's error if the write stops first.
  // - write_future (NoneType): the write starts with the copy and follows it,
  //   piece by piece; completes when the file is durably on disk:
  //   written to a temporary file in the same folder, fsync'd, renamed over
  //   the previous checkpoint, the folder fsync'd; then the barrier, if any.
  //   On failure the previous checkpoint is left as it was and no temporary
  //   file remains; the error names the path.
  std::pair<FuturePtr, FuturePtr> save(
      const std::string& path,
      const c10::IValue& state_dict);

  // Reads `<path>/checkpoint_<rank>.pt`, written by this class or by
  // upstream's CheckpointWriter (torch.save): read_checkpoint().
  c10::IValue load(const std::string& path, const ReadOptions& options = {}) const;

  // Waits for the pending save, then stops the threads. Later saves throw.
  // Errors of the pending save stay in its futures.
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace torch_ext
