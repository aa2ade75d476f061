#pragma once

#include <ATen/core/ivalue.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch_ext/checkpoint_file.h>
#include <torch_ext/export.h>
#include <torch_ext/future_utils.h>
#include <torch_ext/save_options.h>

namespace torch_ext {

// The one statement of the manager's options and their defaults (here, in
// SaveOptions and in RankOptions), whose bounds CheckpointManager's
// constructor checks; Python takes its defaults from here.
struct CheckpointManagerOptions : SaveOptions, RankOptions {
  // How many committed steps retention keeps, the newest ones, >= 1.
  // Unset: every step is kept.
  std::optional<int64_t> max_to_keep;
  // Steps that are multiples of it are never deleted, >= 1. Unset: none.
  std::optional<int64_t> keep_every_n_steps;
  // The job's c10d store (the process group's), through which the ranks
  // exchange their write status and rank 0 its commit decision. Required
  // when world_size > 1. The manager talks to it through a clone (a second
  // connection to the same server, so that its waits never hold up the
  // job's own use of the store); no port of its own is opened.
  c10::intrusive_ptr<c10d::Store> store;
  // How long a rank waits for the others at a save's barrier, and at
  // construction for rank 0's clean-up; > 0.
  std::chrono::milliseconds barrier_timeout = kDefaultBarrierTimeout;
};

// Which steps of a training run exist on disk, as orbax's CheckpointManager
// decides it: one folder per step, `<root>/step_<step>/`, holding each
// rank's `checkpoint_<rank>.pt` (the layout of upstream DCP's
// CheckpointWriter) and, written last by rank 0 once every rank's file is
// durable, a commit file. A step is committed once its commit file exists;
// listing, loading and retention see committed steps only, so a crash at
// any point leaves either the step whole or no step.
//
//   torch_ext::CheckpointManagerOptions options;
//   options.max_to_keep = 2;
//   torch_ext::CheckpointManager manager("ckpt", options);
//   if (auto step = manager.latest_step()) {
//     restore(manager.load());          // resume where the last run got to
//   }
//   auto [staged, committed] = manager.save(step, state_dict);
//   staged->waitAndThrow();             // the tensors may change from here on
//   ...
//   committed->waitAndThrow();          // every rank's file is durable
//
// With several ranks every rank constructs a manager on the same root (a
// shared filesystem), in the same order as its other managers, and calls
// save with the same steps; rank 0 commits and deletes.
//
// Thread-safe: every method may be called from any thread.
class TORCH_EXT_API CheckpointManager {
 public:
  // Rank 0 first removes what a crash left under `root`: step folders
  // without a commit file, and temporary files; committed steps are never
  // touched. The other ranks wait for it, at most barrier_timeout, so that
  // no rank writes before the clean-up is over. `root` is created by the
  // first save if missing.
  explicit CheckpointManager(std::string root, CheckpointManagerOptions options = {});
  ~CheckpointManager(); // close()
  CheckpointManager(const CheckpointManager&) = delete;
  CheckpointManager& operator=(const CheckpointManager&) = delete;

  // Saves this rank's `state_dict` (a dict of the values a checkpoint holds,
  // <torch_ext/checkpoint_values.h>) as `step`. First waits for the previous
  // save to finish (its errors stay in its futures), then throws if `step`
  // is already committed, and otherwise returns at once:
  // - stage_future (NoneType): completes once the tensors are copied, after
  //   which the caller may change them;
  // - commit_future (NoneType): completes once the step is committed, on
  //   every rank; or fails, on every rank, with an error naming the step,
  //   its folder and why: which rank failed to stage or write its file (a
  //   full disk, an unwritable root), which ranks missed the barrier, or
  //   that the commit itself failed. The previous committed step stays
  //   loadable, and the next save is unaffected.
  // Then rank 0 applies retention, on the manager's thread. Callbacks on
  // the futures run on the manager's threads: they must not call save,
  // save_failure, wait_until_finished or close, which wait for them.
  // A state_dict that is not a dict throws a TypeError here, after telling
  // the other ranks that this rank fails the save.
  std::pair<FuturePtr, FuturePtr> save(int64_t step, const c10::IValue& state_dict);

  // Takes part in the save of `step` as this rank's failure to produce its
  // state dict (a conversion that failed in a binding, say): the step is not
  // committed, and every rank's commit_future fails with `error`, naming
  // this rank. Returns this rank's futures, both failed.
  std::pair<FuturePtr, FuturePtr> save_failure(int64_t step, std::exception_ptr error);

  // The committed steps, ascending.
  std::vector<int64_t> all_steps() const;
  // The newest committed step; nullopt when there is none.
  std::optional<int64_t> latest_step() const;

  // This rank's file of the committed `step`, read as read_checkpoint_file
  // reads it. Throws, naming the step and the root, if it is not committed.
  // Retention in this process waits for the load; on a rank other than 0,
  // a load of a step that rank 0's retention deletes meanwhile may fail.
  c10::IValue load(int64_t step, const ReadOptions& options = {}) const;
  // The latest committed step's; throws if there is none.
  c10::IValue load(const ReadOptions& options = {}) const;

  // `<root>/step_<step>`.
  std::string step_path(int64_t step) const;
  const std::string& root() const;

  // Waits until the pending save, its commit and its retention are over.
  void wait_until_finished();

  // wait_until_finished(), then stops the threads. Later saves throw.
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace torch_ext
