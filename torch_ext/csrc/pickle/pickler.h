#pragma once

#include <ATen/core/ivalue.h>

#include <string>
#include <vector>

namespace torch_ext::detail {

// A state value pickled as torch.save pickles it (protocol 2, the globals
// torch.load(weights_only=True) allows, no TorchScript type tags): tensors
// as torch._utils._rebuild_tensor_v2 (or _v3 for dtypes without a legacy
// storage class) over a persistent id ('storage', <class>, key, 'cpu',
// numel). Tensors that share a storage share its key, so the storage is
// written once and they share it again when loaded; `storages[i]` is the
// storage of key `i`, in the order first met.
struct PickledState {
  std::string pickle;
  std::vector<c10::Storage> storages;
};

// Throws a TypeError naming the entry for a value a checkpoint cannot hold,
// for a tensor that is not on the CPU, and for a storage viewed with two
// dtypes (as torch.save does).
PickledState pickle_state(const c10::IValue& state);

} // namespace torch_ext::detail
