#include <torch_ext/checkpointer.h>

#include <exception>
#include <mutex>
#include <utility>

#include <c10/util/Exception.h>
#include <c10/util/Logging.h>

#include <torch_ext/checkpoint_file.h>

#include "complete_guarded.h"
#include "serial_executor.h"
#include "staging.h"

namespace torch_ext {

using c10::ivalue::Future;

namespace {

template <typename Complete>
void complete_guarded(Complete&& complete) noexcept {
  detail::complete_guarded("AsyncCheckpointer", std::forward<Complete>(complete));
}

} // namespace

struct AsyncCheckpointer::Impl {
  explicit Impl(AsyncCheckpointerOptions options)
      : options(std::move(options)) {}

  const AsyncCheckpointerOptions options;
  std::mutex mutex; // serializes save and close
  FuturePtr pending_write;
  bool closed = false;
  std::vector<c10::Storage> staging_buffers; // used on the stager thread only
  // Staging and writing have a thread each, so that one save's write
  // overlaps the caller's work after its staging.
  detail::SerialExecutor stager;
  detail::SerialExecutor writer;
};

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
  auto fence = std::make_shared<const detail::DeviceFence>(state_dict);
  impl->stager.post([impl, path, state_dict, fence, staged, written] {
    c10::IValue copy;
    try {
      fence->wait();
      copy = detail::stage_state_dict(
          state_dict, static_cast<int>(impl->options.staging_threads), impl->staging_buffers);
    } catch (...) {
      std::exception_ptr error = std::current_exception();
      complete_guarded([&] { staged->setError(error); });
      complete_guarded([&] { written->setError(error); });
      return;
    }
    // Callbacks on the stage future run here, on the staging thread.
    complete_guarded([&] { staged->markCompleted(copy); });
    impl->writer.post([impl, path, copy = std::move(copy), written] {
      try {
        write_checkpoint(path, impl->options.rank, copy);
        if (impl->options.barrier) {
          impl->options.barrier->execute_barrier();
        }
      } catch (...) {
        std::exception_ptr error = std::current_exception();
        complete_guarded([&] { written->setError(error); });
        return;
      }
      complete_guarded([&] { written->markCompleted(); });
    });
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
}

} // namespace torch_ext
