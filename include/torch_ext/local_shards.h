#pragma once

// LocalShards: the parts of one larger (global) tensor that this rank holds,
// a value a state dict may hold in place of a tensor when the tensor is
// split across ranks (FSDP2's DTensors, tensor parallel, an embedding that
// a C++ program splits by rows). Each part is a tensor and its offsets in
// the global tensor: what DCP's ChunkStorageMetadata records of it. A rank
// may hold several parts of one tensor (upstream's LocalShardsWrapper), or
// an empty one (a rank left without rows).
//
// It is a TorchScript custom class (torch.classes.torch_ext.LocalShards), so
// an IValue holds it as it holds a tensor: in any dict or list of a state,
// shared by reference (the parts are the caller's tensors, which a
// resharding load fills in place), and distinguishable from every other
// value, unlike a dict or tuple that would spell the same fields.
// value_kind() says ValueKind::LocalShards for it. Only the sharded DCP save
// and load (<torch_ext/dcp_sharded.h>) take it; every other save refuses
// it, naming the entry.

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <vector>

#include <torch_ext/export.h>

namespace torch_ext {

// One part: `tensor` holds the box of the global tensor that starts at
// `offsets` and spans tensor.sizes().
struct Shard {
  at::Tensor tensor;
  std::vector<int64_t> offsets;
};

class TORCH_EXT_API LocalShards : public torch::CustomClassHolder {
 public:
  // Throws a ValueError unless every part is a dense tensor of a dtype a
  // checkpoint holds, of the global tensor's number of dims, inside it
  // (0 <= offset and offset + size <= global size in every dim), and of
  // the dtype of the others; and there is at least one part.
  LocalShards(std::vector<Shard> shards, std::vector<int64_t> global_shape);

  const std::vector<Shard>& shards() const {
    return shards_;
  }
  const std::vector<int64_t>& global_shape() const {
    return global_shape_;
  }
  c10::ScalarType dtype() const {
    return shards_.front().tensor.scalar_type();
  }

 private:
  std::vector<Shard> shards_;
  std::vector<int64_t> global_shape_;
};

// An IValue holding a LocalShards of `shards` (checked as its constructor
// checks them).
TORCH_EXT_API c10::IValue make_local_shards(std::vector<Shard> shards, std::vector<int64_t> global_shape);

// The LocalShards that `value` holds, or null for any other value.
TORCH_EXT_API c10::intrusive_ptr<LocalShards> as_local_shards(const c10::IValue& value);

} // namespace torch_ext
