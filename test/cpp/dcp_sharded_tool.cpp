// Run by test/test_dcp_sharded.py: a sharded save by several ranks (threads
// of this process, agreeing through a TCPStore), for upstream to read.
//   dcp_sharded_tool save FILE DIR WORLD_SIZE
// reads the state dict FILE (torch.save's) and has WORLD_SIZE ranks save it
// into DIR with save_sharded: every tensor of one or more dims split by
// rows (the first rows % WORLD_SIZE ranks one row more), the rest
// replicated.
#include <torch_ext/checkpoint_file.h>
#include <torch_ext/dcp_sharded.h>
#include <torch_ext/local_shards.h>

#include <exception>
#include <future>
#include <iostream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

namespace {

// Rank `rank`'s part of `value`: its rows of every tensor of 1 or more dims
// in a dict of it, everything else as it is.
c10::IValue part_of(const c10::IValue& value, int64_t rank, int64_t world_size) {
  if (value.isGenericDict()) {
    c10::impl::GenericDict part(value.toGenericDict().keyType(), c10::AnyType::get());
    for (const auto& entry : value.toGenericDict()) {
      part.insert(entry.key(), part_of(entry.value(), rank, world_size));
    }
    return part;
  }
  if (!value.isTensor() || value.toTensor().dim() == 0) {
    return value;
  }
  const at::Tensor& whole = value.toTensor();
  const int64_t rows = whole.size(0);
  const int64_t begin = rank * (rows / world_size) + std::min(rank, rows % world_size);
  const int64_t count = rows / world_size + (rank < rows % world_size ? 1 : 0);
  std::vector<int64_t> offsets(static_cast<size_t>(whole.dim()), 0);
  offsets[0] = begin;
  return torch_ext::make_local_shards({torch_ext::Shard{whole.narrow(0, begin, count).clone(), offsets}}, whole.sizes().vec());
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 5 || std::string(argv[1]) != "save") {
    std::cerr << "usage: dcp_sharded_tool save FILE DIR WORLD_SIZE\n";
    return 2;
  }
  const c10::IValue state = torch_ext::read_checkpoint_file(argv[2]);
  const std::string folder = argv[3];
  const int64_t world_size = std::stoll(argv[4]);
  c10d::TCPStoreOptions options;
  options.port = 0;
  options.isServer = true;
  options.waitWorkers = false;
  const auto store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", options);
  std::vector<std::future<void>> ranks;
  for (int64_t rank = 0; rank < world_size; ++rank) {
    ranks.push_back(std::async(std::launch::async, [&, rank] {
      torch_ext::dcp::save_sharded(
          folder, part_of(state, rank, world_size), torch_ext::dcp::SaveRanks{store, rank, world_size, std::chrono::seconds(60)});
    }));
  }
  int status = 0;
  for (auto& rank : ranks) {
    try {
      rank.get();
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\n";
      status = 1;
    }
  }
  return status;
}
