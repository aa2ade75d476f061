#include <torch_ext/checkpointer.h>

#include <exception>
#include <mutex>
#include <utility>

#include <c10/util/Exception.h>
#include <c10/util/Logging.h>

#include <torch_ext/checkpoint_file.h>

#include "torch_ext/csrc/torch_save/torch_save_format.h"

#include "complete_guarded.h"
#include "save_pipeline.h"

namespace torch_ext {

using c10::ivalue::Future;

namespace {

template <typename Complete>
void complete_guarded(Complete&& complete) noexcept {
  detail::complete_guarded("AsyncCheckpointer", std::forward<Complete>(complete));
}

} // namespace

struct AsyncCheckpointer::Impl {
  explicit Impl(AsyncCheckpointerOptions options_)
      : options(std::move(options_)), pipeline(options, "AsyncCheckpointer", detail::torch_save_format()) {}

  // On the writer thread, once this rank's file is durable or the save failed.
  void finish(const FuturePtr& written, std::exception_ptr error) noexcept;

  const AsyncCheckpointerOptions options;
  std::mutex mutex; // serializes save and close
  FuturePtr pending_write;
  bool closed = false;
  detail::SavePipeline pipeline;
};

void AsyncCheckpointer::Impl::finish(const FuturePtr& written, std::exception_ptr error) noexcept {
  if (!error && options.barrier) {
    try {
      options.barrier->execute_barrier();
    } catch (...) {
      error = std::current_exception();
    }
  }
  if (error) {
    complete_guarded([&] { written->setError(error); });
  } else {
    complete_guarded([&] { written->markCompleted(); });
  }
}

AsyncCheckpointer::AsyncCheckpointer(AsyncCheckpointerOptions options) {
  check_rank_options(options, "AsyncCheckpointer");
  check_save_options(options, "AsyncCheckpointer");
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

  auto staged = c10::make_intrusive<Future>(c10::NoneType::get());
  auto written = c10::make_intrusive<Future>(c10::NoneType::get());
  impl_->pending_write = written;
  Impl* impl = impl_.get();
  // The only format, torch.save's, reports nothing for the ranks to join.
  impl->pipeline.save(
      path,
      impl->options.rank,
      state_dict,
      staged,
      [impl, written](std::exception_ptr error, detail::SavePhase /*failed*/, detail::RankWriteResult /*result*/) {
        impl->finish(written, std::move(error));
      });
  return {staged, written};
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
  impl_->pipeline.close();
  impl_->pending_write.reset();
}

} // namespace torch_ext
