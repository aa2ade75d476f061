#include "staging_copy.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>

#include <ATen/ATen.h>
#include <c10/util/ParallelGuard.h>

namespace torch_ext::detail {
namespace {

// Large storages are copied in pieces so that several threads share them.
constexpr uint64_t kCopyPieceBytes = uint64_t{16} << 20;

std::atomic<CopyObserver> copy_observer{nullptr};

// Bytes [offset, offset + size) of a job.
struct Piece {
  const CopyJob* job;
  uint64_t offset;
  uint64_t size;
};

// A byte tensor over all of `storage`, for copies between devices.
at::Tensor bytes_of(const c10::Storage& storage) {
  at::Tensor bytes = at::empty({0}, at::TensorOptions().dtype(at::kByte).device(storage.device()));
  bytes.set_(storage, 0, {static_cast<int64_t>(storage.nbytes())}, {1});
  return bytes;
}

void copy_piece(const Piece& piece) {
  const StorageSlice& source = piece.job->source;
  const uint64_t offset = source.offset + piece.offset;
  if (const CopyObserver observe = copy_observer.load(std::memory_order_acquire)) {
    observe(source.storage.unsafeGetStorageImpl(), offset, piece.size);
  }
  char* destination = piece.job->destination + piece.offset;
  if (source.storage.device().is_cpu()) {
    std::memcpy(destination, static_cast<const char*>(source.storage.data()) + offset, piece.size);
    return;
  }
  at::Tensor to = at::from_blob(destination, {static_cast<int64_t>(piece.size)}, at::kByte);
  to.copy_(bytes_of(source.storage).narrow(0, static_cast<int64_t>(offset), static_cast<int64_t>(piece.size)));
}

std::vector<Piece> pieces_of(const std::vector<CopyJob>& jobs) {
  std::vector<Piece> pieces;
  for (const CopyJob& job : jobs) {
    const uint64_t size = job.source.size;
    if (!job.source.storage.device().is_cpu()) {
      if (size > 0) {
        pieces.push_back({&job, 0, size}); // one copy from the device
      }
      continue;
    }
    for (uint64_t done = 0; done < size; done += kCopyPieceBytes) {
      pieces.push_back({&job, done, std::min(kCopyPieceBytes, size - done)});
    }
  }
  return pieces;
}

} // namespace

void copy_bytes(const std::vector<CopyJob>& jobs, int threads, const std::function<void(uint64_t)>& copied) {
  const std::vector<Piece> pieces = pieces_of(jobs);
  std::atomic<size_t> next{0};
  std::exception_ptr first_error;
  std::mutex mutex; // guards first_error and the progress below
  std::vector<bool> done(pieces.size(), false);
  size_t done_prefix = 0;
  uint64_t done_bytes = 0;
  auto work = [&] {
    // Our copies stay on this thread instead of taking the intra-op pool
    // from the training loop.
    c10::ParallelGuard serial(true);
    for (size_t i = next++; i < pieces.size(); i = next++) {
      try {
        copy_piece(pieces[i]);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!first_error) {
          first_error = std::current_exception();
        }
        next = pieces.size();
        return;
      }
      if (copied) {
        std::lock_guard<std::mutex> lock(mutex);
        done[i] = true;
        const size_t before = done_prefix;
        while (done_prefix < pieces.size() && done[done_prefix]) {
          done_bytes += pieces[done_prefix++].size;
        }
        if (done_prefix != before) {
          copied(done_bytes);
        }
      }
    }
  };
  std::vector<std::thread> helpers;
  const size_t extra = std::min<size_t>(static_cast<size_t>(std::max(threads, 1) - 1), pieces.size());
  helpers.reserve(extra);
  for (size_t i = 0; i < extra; ++i) {
    helpers.emplace_back(work);
  }
  work();
  for (std::thread& helper : helpers) {
    helper.join();
  }
  if (first_error) {
    std::rethrow_exception(first_error);
  }
}

void observe_copies_for_testing(CopyObserver observer) {
  copy_observer.store(observer, std::memory_order_release);
}

} // namespace torch_ext::detail
