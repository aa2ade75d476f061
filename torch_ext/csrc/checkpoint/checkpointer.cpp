#include <torch_ext/checkpointer.h>

#include <exception>

#ifdef __linux__
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#endif
#include <mutex>
#include <utility>

#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <c10/util/Logging.h>

#include <torch_ext/checkpoint_file.h>

#include "serial_executor.h"
#include "staged_write.h"
#include "staging.h"
#include "staging_waves.h"

namespace torch_ext {

using c10::ivalue::Future;

namespace {

// c10 lets a callback's exception escape from markCompleted and setError,
// after the future is complete: it must not stop our threads.
template <typename Complete>
void complete_guarded(Complete&& complete) noexcept {
  try {
    complete();
  } catch (const std::exception& e) {
    LOG(ERROR) << "AsyncCheckpointer: a callback of a checkpoint future threw: "
               << e.what();
  } catch (...) {
    LOG(ERROR) << "AsyncCheckpointer: a callback of a checkpoint future threw";
  }
}

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

struct AsyncCheckpointer::Impl {
  explicit Impl(AsyncCheckpointerOptions options)
      : options(std::move(options)) {
    writer.post([nice = this->options.writer_nice] { lower_this_thread_priority(static_cast<int>(nice)); });
  }

  // Runs on the stager thread: posts the write, which follows the copy as
  // it is made, then copies the whole state dict.
  void stage_whole(const std::string& path, const c10::IValue& state_dict, const FuturePtr& staged, const FuturePtr& written);
  // Runs on the stager thread: posts the write first, which drains the
  // waves as they are staged.
  void stage_in_waves(const std::string& path, const c10::IValue& state_dict, const FuturePtr& staged, const FuturePtr& written);
  // Runs on the writer thread: `body`, then the barrier; completes `written`.
  template <typename Body>
  void write(const FuturePtr& written, Body&& body);
  std::vector<char*> wave_buffers();

  const AsyncCheckpointerOptions options;
  std::mutex mutex; // serializes save and close
  FuturePtr pending_write;
  bool closed = false;
  // Used on the stager thread only: the copy of the last save, or the wave
  // buffers with max_staging_bytes.
  std::vector<c10::Storage> staging_buffers;
  std::vector<c10::DataPtr> waves;
  // Staging and writing have a thread each, so that a save's write overlaps
  // its staging and the caller's work after it.
  detail::SerialExecutor stager;
  detail::SerialExecutor writer;
};

template <typename Body>
void AsyncCheckpointer::Impl::write(const FuturePtr& written, Body&& body) {
  try {
    body();
    if (options.barrier) {
      options.barrier->execute_barrier();
    }
  } catch (...) {
    std::exception_ptr error = std::current_exception();
    complete_guarded([&] { written->setError(error); });
    return;
  }
  complete_guarded([&] { written->markCompleted(); });
}

void AsyncCheckpointer::Impl::stage_whole(
    const std::string& path,
    const c10::IValue& state_dict,
    const FuturePtr& staged,
    const FuturePtr& written) {
  std::shared_ptr<detail::StateCopy> copy;
  try {
    copy = std::make_shared<detail::StateCopy>(state_dict, staging_buffers);
  } catch (...) {
    std::exception_ptr error = std::current_exception();
    complete_guarded([&] { staged->setError(error); });
    complete_guarded([&] { written->setError(error); });
    return;
  }
  // The write starts now and follows the copy, piece by piece.
  auto progress = std::make_shared<detail::StagingProgress>();
  writer.post([this, path, copy, progress, written]() mutable {
    write(written, [&] {
      // Let go of the copy before `written` completes: the next save, which
      // waits for it, reuses the copy's buffers only if nothing holds them.
      const std::shared_ptr<detail::StateCopy> held = std::move(copy);
      detail::write_while_staging(path, options.rank, held->state(), held->storages(), *progress);
    });
  });
  try {
    copy->run(static_cast<int>(options.staging_threads), progress.get());
  } catch (...) {
    std::exception_ptr error = std::current_exception();
    complete_guarded([&] { staged->setError(error); });
    return;
  }
  copy.reset();
  // Callbacks on the stage future run here, on the staging thread.
  complete_guarded([&] { staged->markCompleted(); });
}

std::vector<char*> AsyncCheckpointer::Impl::wave_buffers() {
  const auto capacity = static_cast<size_t>(options.max_staging_bytes / 2);
  while (waves.size() < 2) {
    waves.push_back(c10::GetCPUAllocator()->allocate(capacity));
  }
  return {static_cast<char*>(waves[0].get()), static_cast<char*>(waves[1].get())};
}

void AsyncCheckpointer::Impl::stage_in_waves(
    const std::string& path,
    const c10::IValue& state_dict,
    const FuturePtr& staged,
    const FuturePtr& written) {
  std::shared_ptr<const detail::WavePlan> plan;
  try {
    plan = std::make_shared<const detail::WavePlan>(detail::plan_waves(state_dict));
  } catch (...) {
    std::exception_ptr error = std::current_exception();
    complete_guarded([&] { staged->setError(error); });
    complete_guarded([&] { written->setError(error); });
    return;
  }
  auto pipe = std::make_shared<detail::WavePipe>(wave_buffers(), static_cast<size_t>(options.max_staging_bytes / 2));
  writer.post([this, path, plan, pipe, written] {
    write(written, [&] { detail::write_waves(path, options.rank, *plan, *pipe); });
  });
  try {
    // A failed write fails this too: the waves stop with it.
    detail::stage_waves(plan->sources, *pipe, static_cast<int>(options.staging_threads));
  } catch (...) {
    std::exception_ptr error = std::current_exception();
    complete_guarded([&] { staged->setError(error); });
    return;
  }
  complete_guarded([&] { staged->markCompleted(); });
}

AsyncCheckpointer::AsyncCheckpointer(AsyncCheckpointerOptions options) {
  TORCH_CHECK_VALUE(
      options.world_size >= 1 && options.rank >= 0 &&
          options.rank < options.world_size,
      "AsyncCheckpointer expected 0 <= rank < world_size, got rank ",
      options.rank,
      " and world_size ",
      options.world_size);
  TORCH_CHECK_VALUE(
      options.staging_threads >= 1 && options.staging_threads <= 1024,
      "AsyncCheckpointer expected 1 <= staging_threads <= 1024, got ",
      options.staging_threads);
  TORCH_CHECK_VALUE(
      options.writer_nice >= 0 && options.writer_nice <= 19,
      "AsyncCheckpointer expected 0 <= writer_nice <= 19, got ",
      options.writer_nice);
  TORCH_CHECK_VALUE(
      options.max_staging_bytes == 0 || options.max_staging_bytes >= AsyncCheckpointerOptions::kMinStagingBytes,
      "AsyncCheckpointer expected max_staging_bytes to be 0 (no bound) or at least ",
      AsyncCheckpointerOptions::kMinStagingBytes,
      " (1 MiB), got ",
      options.max_staging_bytes);
  impl_ = std::make_unique<Impl>(std::move(options));
}

AsyncCheckpointer::~AsyncCheckpointer() {
  try {
    close();
  } catch (const std::exception& e) {
    LOG(ERROR) << "AsyncCheckpointer: close failed in the destructor: "
               << e.what();
  }
}

std::pair<FuturePtr, FuturePtr> AsyncCheckpointer::save(
    const std::string& path,
    const c10::IValue& state_dict) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  TORCH_CHECK(!impl_->closed, "AsyncCheckpointer.save called after close()");
  TORCH_CHECK_VALUE(
      !path.empty(), "AsyncCheckpointer.save expected a checkpoint folder, got ''");
  TORCH_CHECK_TYPE(
      state_dict.isGenericDict(), "AsyncCheckpointer.save expected the state_dict to be a dict, got ", state_dict.tagKind());
  if (FuturePtr previous = std::exchange(impl_->pending_write, nullptr)) {
    previous->waitAndThrow();
  }

  auto staged = c10::make_intrusive<Future>(c10::AnyType::get());
  auto written = c10::make_intrusive<Future>(c10::NoneType::get());
  impl_->pending_write = written;
  Impl* impl = impl_.get();
  const bool in_waves = impl->options.max_staging_bytes > 0;
  impl->stager.post([impl, in_waves, path, state_dict, staged, written] {
    if (in_waves) {
      impl->stage_in_waves(path, state_dict, staged, written);
    } else {
      impl->stage_whole(path, state_dict, staged, written);
    }
  });
  return {wrap_future(staged), written};
}

c10::IValue AsyncCheckpointer::load(const std::string& path, const ReadOptions& options) const {
  return read_checkpoint(path, impl_->options.rank, options);
}

void AsyncCheckpointer::close() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  if (impl_->closed) {
    return;
  }
  impl_->closed = true;
  impl_->stager.join(); // posts the last write first
  impl_->writer.join();
  impl_->pending_write.reset();
  impl_->staging_buffers.clear();
  impl_->waves.clear();
}

} // namespace torch_ext
