#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <torch_ext/checkpointer.h>
#include <torch_ext/export.h>

namespace torch_ext {

// The Barrier of upstream's TCPStoreBarrier, on c10d's TCPStore: rank 0
// serves the store at host:port, every rank connects to it. Each
// execute_barrier() is one round; every round waits at most `timeout` for
// the other ranks and then throws, naming the round. Rank 0's destructor
// waits, at most `timeout`, for the other ranks to destroy theirs.
class TORCH_EXT_API TCPStoreBarrier : public Barrier {
 public:
  TCPStoreBarrier(
      int64_t rank,
      int64_t world_size,
      std::string barrier_prefix,
      const std::string& host,
      uint16_t port,
      std::chrono::milliseconds timeout);
  ~TCPStoreBarrier() override;

  void execute_barrier() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace torch_ext
