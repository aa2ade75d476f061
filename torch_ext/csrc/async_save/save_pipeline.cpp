#include "save_pipeline.h"

#ifdef __linux__
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#endif
#include <memory>
#include <utility>

#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include "complete_guarded.h"
#include "staged_write.h"
#include "staging.h"
#include "staging_waves.h"

namespace torch_ext::detail {
namespace {

// Raises this thread's own nice value (Linux gives each thread one) to
// `nice`, unless it is already higher; a hint: if the system refuses, the
// thread runs as it was.
void lower_this_thread_priority(int nice) {
#ifdef __linux__
  const auto thread = static_cast<id_t>(::syscall(SYS_gettid));
  errno = 0;
  const int current = ::getpriority(PRIO_PROCESS, thread);
  if (errno == 0 && nice > current) {
    ::setpriority(PRIO_PROCESS, thread, nice);
  }
#else
  (void)nice;
#endif
}

} // namespace

struct SavePipeline::Save {
  std::string folder;
  int64_t rank;
  c10::IValue state_dict;
  FuturePtr staged;
  Finish finish;
  std::shared_ptr<const DeviceFence> fence;
};

SavePipeline::SavePipeline(const SaveOptions& options, const char* who)
    : options_(options), who_(who) {
  writer_.post([nice = options_.writer_nice] { lower_this_thread_priority(static_cast<int>(nice)); });
}

SavePipeline::~SavePipeline() {
  close();
}

void SavePipeline::save(std::string folder, int64_t rank, c10::IValue state_dict, FuturePtr staged, Finish finish) {
  // On the calling thread: the fence covers the work queued before save().
  auto fence = std::make_shared<const DeviceFence>(state_dict);
  stager_.post([this,
                save = Save{std::move(folder), rank, std::move(state_dict), std::move(staged), std::move(finish), std::move(fence)}] {
    try {
      save.fence->wait();
    } catch (...) {
      fail_staging(save, std::current_exception());
      return;
    }
    if (options_.max_staging_bytes > 0) {
      stage_in_waves(save);
    } else {
      stage_whole(save);
    }
  });
}

void SavePipeline::post_to_writer(std::function<void()> task) {
  writer_.post(std::move(task));
}

void SavePipeline::close() {
  stager_.join(); // posts the last write first
  writer_.join();
  staging_buffers_.clear();
  waves_.clear();
}

template <typename Write>
void SavePipeline::finish_after(const Save& save, Write&& write) noexcept {
  std::exception_ptr error;
  SavePhase phase = SavePhase::kWriting;
  try {
    write();
  } catch (const StagingFailed& failed) {
    error = failed.error;
    phase = SavePhase::kStaging;
  } catch (...) {
    error = std::current_exception();
  }
  save.finish(error, phase);
}

void SavePipeline::fail_staging(const Save& save, std::exception_ptr error) {
  complete_guarded(who_, [&] { save.staged->setError(error); });
  writer_.post([save, error] { finish_after(save, [&] { throw StagingFailed{error}; }); });
}

void SavePipeline::stage_whole(const Save& save) {
  std::shared_ptr<StateCopy> copy;
  try {
    copy = std::make_shared<StateCopy>(save.state_dict, staging_buffers_);
  } catch (...) {
    fail_staging(save, std::current_exception());
    return;
  }
  // The write starts now and follows the copy, piece by piece.
  auto progress = std::make_shared<StagingProgress>();
  writer_.post([save, copy, progress]() mutable {
    finish_after(save, [&] {
      // Let go of the copy before the save finishes: the next save, which
      // may wait for it, reuses the copy's buffers only if nothing holds them.
      const std::shared_ptr<StateCopy> held = std::move(copy);
      write_while_staging(save.folder, save.rank, held->state(), held->storages(), *progress);
    });
  });
  try {
    copy->run(static_cast<int>(options_.staging_threads), progress.get());
  } catch (...) {
    // The writer fails with it, through `progress`.
    const std::exception_ptr error = std::current_exception();
    complete_guarded(who_, [&] { save.staged->setError(error); });
    return;
  }
  copy.reset();
  // Callbacks on the stage future run here, on the staging thread.
  complete_guarded(who_, [&] { save.staged->markCompleted(); });
}

std::vector<char*> SavePipeline::wave_buffers() {
  const auto capacity = static_cast<size_t>(options_.max_staging_bytes / 2);
  while (waves_.size() < 2) {
    waves_.push_back(c10::GetCPUAllocator()->allocate(capacity));
  }
  return {static_cast<char*>(waves_[0].get()), static_cast<char*>(waves_[1].get())};
}

void SavePipeline::stage_in_waves(const Save& save) {
  std::shared_ptr<const WavePlan> plan;
  try {
    plan = std::make_shared<const WavePlan>(plan_waves(save.state_dict));
  } catch (...) {
    fail_staging(save, std::current_exception());
    return;
  }
  auto pipe = std::make_shared<WavePipe>(wave_buffers(), static_cast<size_t>(options_.max_staging_bytes / 2));
  writer_.post([save, plan, pipe] {
    finish_after(save, [&] { write_waves(save.folder, save.rank, *plan, *pipe); });
  });
  try {
    // A failed write fails this too: the waves stop with it.
    stage_waves(plan->sources, *pipe, static_cast<int>(options_.staging_threads));
  } catch (...) {
    const std::exception_ptr error = std::current_exception();
    complete_guarded(who_, [&] { save.staged->setError(error); });
    return;
  }
  complete_guarded(who_, [&] { save.staged->markCompleted(); });
}

} // namespace torch_ext::detail
