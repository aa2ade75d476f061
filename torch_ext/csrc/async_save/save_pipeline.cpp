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
#include "device_fence.h"
#include "staging_copy.h"
#include "staging_plan.h"
#include "wave_staging.h"
#include "whole_staging.h"

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

// A save's write plan and the caller's bytes behind each of its slices.
struct SavePipeline::Planned {
  std::shared_ptr<const WritePlan> write;
  std::vector<StorageSlice> sources;
};

SavePipeline::SavePipeline(const SaveOptions& options, const char* who, std::shared_ptr<const CheckpointFormat> format)
    : options_(options), who_(who), format_(std::move(format)) {
  TORCH_INTERNAL_ASSERT(format_, "SavePipeline needs a format to write in");
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
    Planned planned;
    try {
      save.fence->wait();
      planned = plan(save);
    } catch (...) {
      fail_staging(save, std::current_exception());
      return;
    }
    if (options_.max_staging_bytes > 0) {
      stage_in_waves(save, std::move(planned));
    } else {
      stage_whole(save, std::move(planned));
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

SavePipeline::Planned SavePipeline::plan(const Save& save) const {
  const StagingPlan staging = plan_staging(save.state_dict);
  std::shared_ptr<const WritePlan> write = format_->plan(save.folder, save.rank, staging.state);
  std::vector<StorageSlice> sources = source_slices(staging, write->slices());
  return {std::move(write), std::move(sources)};
}

template <typename Write>
void SavePipeline::finish_after(const Save& save, Write&& write) noexcept {
  std::exception_ptr error;
  SavePhase phase = SavePhase::kWriting;
  RankWriteResult result;
  try {
    result = write();
  } catch (const StagingFailed& failed) {
    error = failed.error;
    phase = SavePhase::kStaging;
  } catch (...) {
    error = std::current_exception();
  }
  save.finish(error, phase, std::move(result));
}

void SavePipeline::fail_staging(const Save& save, std::exception_ptr error) {
  complete_guarded(who_, [&] { save.staged->setError(error); });
  writer_.post([save, error] { finish_after(save, [&]() -> RankWriteResult { throw StagingFailed{error}; }); });
}

void SavePipeline::stage_whole(const Save& save, Planned planned) {
  std::shared_ptr<WholeStaging> staging;
  try {
    staging = std::make_shared<WholeStaging>(std::move(planned.sources), staging_buffers_);
  } catch (...) {
    fail_staging(save, std::current_exception());
    return;
  }
  // The write starts now and follows the copy, piece by piece.
  writer_.post([save, write = std::move(planned.write), staging]() mutable {
    finish_after(save, [&] {
      // Let go of the staging before the save finishes: the next save, which
      // may wait for it, reuses its buffers only if nothing holds them.
      const std::shared_ptr<WholeStaging> held = std::move(staging);
      return write_plan(*write, *held);
    });
  });
  try {
    // A failed copy fails the writer too, through `staging`.
    staging->run(static_cast<int>(options_.staging_threads));
  } catch (...) {
    const std::exception_ptr error = std::current_exception();
    complete_guarded(who_, [&] { save.staged->setError(error); });
    return;
  }
  staging.reset();
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

void SavePipeline::stage_in_waves(const Save& save, Planned planned) {
  std::shared_ptr<WaveStaging> staging;
  try {
    staging = std::make_shared<WaveStaging>(wave_buffers(), static_cast<size_t>(options_.max_staging_bytes / 2));
  } catch (...) {
    fail_staging(save, std::current_exception());
    return;
  }
  writer_.post([save, write = std::move(planned.write), staging] {
    finish_after(save, [&] {
      try {
        return write_plan(*write, *staging);
      } catch (...) {
        staging->fail(std::current_exception()); // the stager stops with it
        throw;
      }
    });
  });
  try {
    // A failed write fails this too: the waves stop with it.
    staging->stage(planned.sources, static_cast<int>(options_.staging_threads));
  } catch (...) {
    const std::exception_ptr error = std::current_exception();
    complete_guarded(who_, [&] { save.staged->setError(error); });
    return;
  }
  complete_guarded(who_, [&] { save.staged->markCompleted(); });
}

} // namespace torch_ext::detail
