#pragma once

// Sharded saves and resharding loads in DCP's standard format, from C++:
// every rank of a job saves its parts of the state (LocalShards,
// <torch_ext/local_shards.h>) into one folder that upstream's dcp.load reads
// into DTensors of any layout, and any number of ranks later reads into the
// parts they own then, each reading only the saved bytes it needs.

#include <ATen/core/ivalue.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <cstdint>
#include <string>

#include <torch_ext/dcp.h>
#include <torch_ext/export.h>

namespace torch_ext::dcp {

// The ranks of a save and how they agree: through `store` (the job's c10d
// store, e.g. torch.distributed's default one; none for a single rank),
// waiting for each other at most `timeout`.
struct SaveRanks {
  c10::intrusive_ptr<c10d::Store> store;
  int64_t rank = 0;
  int64_t world_size = 1;
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
};

// Collective: every rank of `ranks` calls it with its own `state_dict`, a
// dict of what value_kind() accepts, LocalShards included (tensors on the
// CPU). Writes the folder `path` as upstream's dcp.save with a
// FileSystemWriter does from as many ranks:
// - each rank writes its items into its data files `__<rank>_<i>.distcp`
//   (options.thread_count of them); an item is a part of a LocalShards or
//   a plain tensor (in chunks of rows of at most options.max_chunk_bytes),
//   or a non-tensor value;
// - an item that several ranks hold (the same key and, for a part, the
//   same offsets: a replicated value) is written once, by the lowest rank
//   that holds it: rank 0 when every rank holds it;
// - rank 0 checks every rank's plan before any rank writes: for each key
//   one kind (parts, a tensor or a non-tensor value) on every rank, one
//   dtype and global shape, and parts that tile the global tensor (no
//   overlap, no gap), else every rank throws a ValueError naming the key
//   and nothing is written;
// - rank 0 writes `.metadata` (every rank's chunks and items) only after
//   every rank's data files are durable, as the commit (prepare_folder,
//   commit_metadata). A rank that fails its write makes no rank commit:
//   every rank throws, naming the failed rank and why. Data files of a save
//   that was not committed stay, in a folder without `.metadata`, which no
//   reader takes for a checkpoint.
// Each rank other than 0 makes a constant number of store calls; rank 0
// gathers every rank's plan and results.
TORCH_EXT_API void save_sharded(
    const std::string& path,
    const c10::IValue& state_dict,
    const SaveRanks& ranks,
    const DcpWriteOptions& options = {});

// A resharding load, run by each rank on its own (no agreement is needed):
// fills, in place, every tensor of `into` (a dict, nested as saved) from the
// checkpoint `reader` reads: the parts of a LocalShards with the saved
// chunks' elements of their boxes, a plain tensor with the whole tensor.
// Only the regions where a part and a saved chunk overlap are read, whatever
// the split (any dims, uneven, several chunks into one part, one part from
// several chunks). Non-tensor values of `into` are replaced, in their
// containers, by the checkpoint's. A key the checkpoint lacks, a tensor or
// part whose global shape or dtype differs from the saved one, or a value
// of another kind than the saved one is a ValueError naming the key, raised
// before anything is read. With the reader's `verify`, each saved item read
// from is checked against its CRC32s, which reads the whole item once: a
// save_sharded's items are at most max_chunk_bytes (of rows) each.
TORCH_EXT_API void load_sharded(const CheckpointReader& reader, const c10::IValue& into);

// The same, from the folder `path`.
TORCH_EXT_API void load_sharded(const std::string& path, const c10::IValue& into, bool verify = true);

} // namespace torch_ext::dcp
