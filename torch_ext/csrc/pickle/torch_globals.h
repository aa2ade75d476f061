#pragma once

#include <ATen/core/ivalue.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "unpickler.h"

namespace torch_ext::detail {

// The storage of record `data/<key>`, as loaded by the caller (mapped from
// the file, typically).
using LoadStorage = std::function<c10::Storage(const std::string& key)>;

// The globals of torch.save's pickles that torch.load(weights_only=True)
// allows of a state dict: torch's tensor rebuild functions
// (_rebuild_tensor_v2, _v3, _rebuild_parameter), storage classes and dtypes,
// collections.OrderedDict (with its attributes, set by BUILD) and
// torch.Size; persistent ids name storages, loaded by `load_storage`. Any
// other global is refused, naming it. Another set (DCP's metadata) may hold
// one and hand it what it does not know itself.
class TorchGlobals final : public PickleGlobals {
 public:
  explicit TorchGlobals(LoadStorage load_storage);

  std::shared_ptr<const PickleObject> global(const PickleContext& context, const std::string& module, const std::string& name)
      override;
  Made reduce(const PickleContext& context, const PickleObject& callable, const std::vector<PickleItem>& arguments) override;
  void build(const PickleContext& context, const PickleItem& target, const PickleItem& state) override;
  Made persistent_load(const PickleContext& context, const PickleItem& id) override;
  c10::IValue dict_key(const PickleContext& context, const c10::IValue& key) override;

 private:
  Made rebuild_tensor(const PickleContext& context, bool v3, const std::vector<PickleItem>& arguments);

  struct StorageUse {
    c10::Storage storage;
    std::string storage_class; // of its first use, which every other must share
  };

  LoadStorage load_storage_;
  std::unordered_map<std::string, StorageUse> storages_; // by key
  std::unordered_map<std::string, c10::ScalarType> tensor_dtypes_; // by storage key
};

// The dtype that `item`, a dtype global of TorchGlobals (torch.float32),
// stands for; nullopt for any other item.
std::optional<c10::ScalarType> dtype_of(const PickleItem& item);

// Reads a pickle written by torch.save or pickle_state into a state value
// with TorchGlobals, running no code, under the pickle machine's limits.
c10::IValue unpickle_state(std::string_view pickle, const LoadStorage& load_storage, const FailUnpickling& fail);

} // namespace torch_ext::detail
