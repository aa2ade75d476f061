#include <torch_ext/checkpoint_manager.h>

#include <exception>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <utility>

#include <c10/util/Exception.h>
#include <c10/util/Logging.h>

#include <torch_ext/checkpoint_file.h>

#include "torch_ext/csrc/async_save/complete_guarded.h"
#include "torch_ext/csrc/async_save/save_pipeline.h"
#include "torch_ext/csrc/torch_save/torch_save_format.h"

#include "error_message.h"
#include "rank_exchange.h"
#include "retention.h"
#include "step_commit.h"

namespace torch_ext {

using c10::ivalue::Future;
using detail::message_of;

namespace {

template <typename Complete>
void complete_guarded(Complete&& complete) noexcept {
  detail::complete_guarded("CheckpointManager", std::forward<Complete>(complete));
}

std::exception_ptr runtime_error(const std::string& message) {
  try {
    TORCH_CHECK(false, message);
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

std::string join(const std::vector<int64_t>& steps) {
  std::ostringstream out;
  for (size_t i = 0; i < steps.size(); ++i) {
    out << (i ? ", " : "") << steps[i];
  }
  return out.str();
}

void check_options(const std::string& root, const CheckpointManagerOptions& options) {
  TORCH_CHECK_VALUE(!root.empty(), "CheckpointManager expected a root folder, got ''");
  check_rank_options(options, "CheckpointManager");
  check_save_options(options, "CheckpointManager");
  TORCH_CHECK_VALUE(
      !options.max_to_keep || *options.max_to_keep >= 1,
      "CheckpointManager expected max_to_keep >= 1 (or unset, to keep every step), got ",
      options.max_to_keep.value_or(0));
  TORCH_CHECK_VALUE(
      !options.keep_every_n_steps || *options.keep_every_n_steps >= 1,
      "CheckpointManager expected keep_every_n_steps >= 1 (or unset), got ",
      options.keep_every_n_steps.value_or(0));
  check_barrier_timeout(options.barrier_timeout, "CheckpointManager");
}

} // namespace

struct CheckpointManager::Impl {
  Impl(std::string root_, CheckpointManagerOptions options_)
      : root(std::move(root_)),
        options(std::move(options_)),
        exchange(options.store, options.rank, options.world_size, options.barrier_timeout),
        pipeline(options, "CheckpointManager", detail::torch_save_format()) {}

  // One save, from its start on the calling thread to its end on the writer.
  struct Save {
    int64_t step;
    int64_t sequence;
    FuturePtr staged;
    FuturePtr committed;
    FuturePtr finished; // committed or not, and retention done
  };

  Save begin(int64_t step);
  void stage(const Save& save, const c10::IValue& state_dict);
  void fail(const Save& save, const std::exception_ptr& error);
  // On the writer thread, once this rank's file is durable (`error` unset)
  // or the save failed: agrees with the other ranks, commits or not.
  void commit(const Save& save, std::optional<std::string> error);
  void apply_retention(int64_t saved);
  c10::IValue load_locked(int64_t step, const ReadOptions& options) const;

  const std::string root;
  const CheckpointManagerOptions options;
  detail::RankExchange exchange; // on the writer thread, once constructed

  std::mutex mutex; // serializes save and close
  FuturePtr previous_finished;
  int64_t next_sequence = 0;
  bool closed = false;
  // Loads hold it shared, retention's deletes exclusively: a step being read
  // is deleted only once its file is mapped.
  mutable std::shared_mutex deleting;
  // Last: its threads stop, in the destructor, before the members they use go.
  detail::SavePipeline pipeline;
};

CheckpointManager::CheckpointManager(std::string root, CheckpointManagerOptions options) {
  check_options(root, options);
  impl_ = std::make_unique<Impl>(std::move(root), std::move(options));
  if (impl_->options.rank == 0) {
    for (const std::string& failure : detail::remove_crash_leftovers(impl_->root)) {
      LOG(WARNING) << "CheckpointManager: could not remove what a crash left: " << failure;
    }
  }
  impl_->exchange.start_together("clean up '" + impl_->root + "'");
}

CheckpointManager::~CheckpointManager() {
  try {
    close();
  } catch (const std::exception& e) {
    LOG(ERROR) << "CheckpointManager: close failed in the destructor: " << e.what();
  }
}

CheckpointManager::Impl::Save CheckpointManager::Impl::begin(int64_t step) {
  TORCH_CHECK(!closed, "CheckpointManager.save called after close()");
  TORCH_CHECK_VALUE(step >= 0, "CheckpointManager.save expected a step >= 0, got ", step);
  if (previous_finished) {
    // Its errors are in its futures; this save starts afresh.
    std::exchange(previous_finished, nullptr)->wait();
  }
  // Every rank has learnt the previous outcome, so every rank sees the
  // same committed steps here and raises alike.
  if (detail::is_committed(root, step)) {
    TORCH_CHECK(
        false,
        "CheckpointManager.save: step ",
        step,
        " is already committed in '",
        detail::step_path(root, step),
        "', and a committed step is never overwritten; expected a step that is not committed (committed: ",
        join(detail::committed_steps(root)),
        ")");
  }
  Save save{
      step,
      next_sequence++,
      c10::make_intrusive<Future>(c10::NoneType::get()),
      c10::make_intrusive<Future>(c10::NoneType::get()),
      c10::make_intrusive<Future>(c10::NoneType::get())};
  previous_finished = save.finished;
  return save;
}

void CheckpointManager::Impl::stage(const Save& save, const c10::IValue& state_dict) {
  const std::string rank = "rank " + std::to_string(options.rank);
  pipeline.save(
      detail::step_path(root, save.step),
      options.rank,
      state_dict,
      save.staged,
      // The only format, torch.save's, reports nothing for the ranks to join.
      [this, save, rank](std::exception_ptr error, detail::SavePhase failed, detail::RankWriteResult /*result*/) {
        if (!error) {
          commit(save, std::nullopt);
        } else if (failed == detail::SavePhase::kStaging) {
          commit(save, rank + " failed to stage its state dict: " + message_of(error));
        } else {
          commit(save, rank + " failed to write its file: " + message_of(error));
        }
      });
}

void CheckpointManager::Impl::fail(const Save& save, const std::exception_ptr& error) {
  complete_guarded([&] { save.staged->setError(error); });
  std::string failure = "rank " + std::to_string(options.rank) + " failed to produce its state dict: " + message_of(error);
  pipeline.post_to_writer([this, save, failure = std::move(failure)] { commit(save, failure); });
}

void CheckpointManager::Impl::commit(const Save& save, std::optional<std::string> error) {
  const std::string folder = detail::step_path(root, save.step);
  const detail::RankExchange::Outcome outcome = exchange.agree(
      save.sequence,
      error,
      [&] { detail::commit_step(root, save.step, options.world_size); },
      [&] {
        std::unique_lock<std::shared_mutex> lock(deleting);
        detail::delete_step(root, save.step);
      });
  if (outcome.failure) {
    const std::exception_ptr failure = runtime_error(
        "CheckpointManager: step " + std::to_string(save.step) + " was not committed in '" + folder +
        "': " + *outcome.failure);
    complete_guarded([&] { save.committed->setError(failure); });
  } else {
    complete_guarded([&] { save.committed->markCompleted(); });
    if (options.rank == 0) {
      apply_retention(save.step);
    }
  }
  complete_guarded([&] { save.finished->markCompleted(); });
}

void CheckpointManager::Impl::apply_retention(int64_t saved) {
  std::vector<int64_t> deleted;
  try {
    deleted = detail::steps_to_delete(detail::committed_steps(root), saved, options);
  } catch (...) {
    LOG(WARNING) << "CheckpointManager: retention could not list '" << root
                 << "': " << message_of(std::current_exception());
  }
  for (const int64_t step : deleted) {
    try {
      std::unique_lock<std::shared_mutex> lock(deleting);
      detail::delete_step(root, step);
    } catch (...) {
      // Still committed, or un-committed and removed at the next start.
      LOG(WARNING) << "CheckpointManager: retention could not delete step " << step << ": "
                   << message_of(std::current_exception());
    }
  }
}

std::pair<FuturePtr, FuturePtr> CheckpointManager::save(int64_t step, const c10::IValue& state_dict) {
  if (!state_dict.isGenericDict()) {
    std::exception_ptr error;
    try {
      TORCH_CHECK_TYPE(false, "CheckpointManager.save expected the state_dict to be a dict, got ", state_dict.tagKind());
    } catch (...) {
      error = std::current_exception();
    }
    save_failure(step, error);
    std::rethrow_exception(error);
  }
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const Impl::Save save = impl_->begin(step);
  impl_->stage(save, state_dict);
  return {save.staged, save.committed};
}

std::pair<FuturePtr, FuturePtr> CheckpointManager::save_failure(int64_t step, std::exception_ptr error) {
  TORCH_CHECK_VALUE(error, "CheckpointManager.save_failure expected an error, got none");
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const Impl::Save save = impl_->begin(step);
  impl_->fail(save, error);
  return {save.staged, save.committed};
}

std::vector<int64_t> CheckpointManager::all_steps() const {
  return detail::committed_steps(impl_->root);
}

std::optional<int64_t> CheckpointManager::latest_step() const {
  const std::vector<int64_t> steps = all_steps();
  if (steps.empty()) {
    return std::nullopt;
  }
  return steps.back();
}

c10::IValue CheckpointManager::Impl::load_locked(int64_t step, const ReadOptions& read_options) const {
  TORCH_CHECK(
      detail::is_committed(root, step),
      "CheckpointManager.load: step ",
      step,
      " is not committed in '",
      root,
      "'; expected one of the committed steps (",
      join(detail::committed_steps(root)),
      ")");
  return read_checkpoint(detail::step_path(root, step), options.rank, read_options);
}

c10::IValue CheckpointManager::load(int64_t step, const ReadOptions& options) const {
  std::shared_lock<std::shared_mutex> lock(impl_->deleting);
  return impl_->load_locked(step, options);
}

c10::IValue CheckpointManager::load(const ReadOptions& options) const {
  std::shared_lock<std::shared_mutex> lock(impl_->deleting);
  const std::optional<int64_t> latest = latest_step();
  TORCH_CHECK(latest, "CheckpointManager.load: there is no committed step in '", impl_->root, "' to load");
  return impl_->load_locked(*latest, options);
}

std::string CheckpointManager::step_path(int64_t step) const {
  return detail::step_path(impl_->root, step);
}

const std::string& CheckpointManager::root() const {
  return impl_->root;
}

void CheckpointManager::wait_until_finished() {
  FuturePtr finished;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    finished = impl_->previous_finished;
  }
  if (finished) {
    finished->wait();
  }
}

void CheckpointManager::close() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  if (impl_->closed) {
    return;
  }
  impl_->closed = true;
  impl_->pipeline.close();
  impl_->previous_finished.reset();
}

} // namespace torch_ext
