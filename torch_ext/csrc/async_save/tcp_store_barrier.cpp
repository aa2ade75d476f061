#include <torch_ext/tcp_store_barrier.h>

#include <torch_ext/save_options.h>

#include <exception>

#include <c10/util/Exception.h>
#include <c10/util/Logging.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

namespace torch_ext {

struct TCPStoreBarrier::Impl {
  int64_t rank;
  int64_t world_size;
  std::string prefix;
  std::chrono::milliseconds timeout;
  c10::intrusive_ptr<c10d::TCPStore> store;
  int64_t round = 0;
};

TCPStoreBarrier::TCPStoreBarrier(
    int64_t rank,
    int64_t world_size,
    std::string barrier_prefix,
    const std::string& host,
    uint16_t port,
    std::chrono::milliseconds timeout) {
  check_rank_options({rank, world_size}, "TCPStoreBarrier");
  check_barrier_timeout(timeout, "TCPStoreBarrier");
  c10d::TCPStoreOptions options;
  options.port = port;
  options.isServer = rank == 0;
  options.numWorkers = static_cast<size_t>(world_size);
  options.waitWorkers = false;
  options.timeout = timeout;
  impl_ = std::make_unique<Impl>(Impl{
      rank,
      world_size,
      std::move(barrier_prefix),
      timeout,
      c10::make_intrusive<c10d::TCPStore>(host, options)});
}

// Rank 0 serves the store: it leaves last, or the others could lose the
// store while they still wait on it.
TCPStoreBarrier::~TCPStoreBarrier() {
  try {
    const std::string left = impl_->prefix + "/left";
    const bool last = impl_->store->add(left, 1) == impl_->world_size;
    if (last) {
      impl_->store->set(left + "/all", std::vector<uint8_t>{1});
    }
    if (impl_->rank == 0 && !last) {
      impl_->store->wait({left + "/all"}, impl_->timeout);
    }
  } catch (const std::exception& e) {
    LOG(WARNING) << "TCPStoreBarrier: rank " << impl_->rank
                 << " left before every rank did: " << e.what();
  }
}

void TCPStoreBarrier::execute_barrier() {
  const std::string round =
      impl_->prefix + "/" + std::to_string(impl_->round++);
  const std::string arrived = round + "/arrived";
  if (impl_->store->add(arrived, 1) == impl_->world_size) {
    impl_->store->set(arrived + "/all", std::vector<uint8_t>{1});
  }
  try {
    impl_->store->wait({arrived + "/all"}, impl_->timeout);
  } catch (const std::exception& e) {
    TORCH_CHECK(
        false,
        "TCPStoreBarrier: rank ",
        impl_->rank,
        " waited ",
        impl_->timeout.count(),
        " ms at barrier '",
        round,
        "' for all ",
        impl_->world_size,
        " ranks, expected every rank to reach it: ",
        e.what());
  }
}

} // namespace torch_ext
