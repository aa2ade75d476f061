#include "staging_plan.h"

#include <unordered_map>
#include <utility>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "torch_ext/csrc/state/state_value.h"

namespace torch_ext::detail {
namespace {

// Builds the copy while visit_state walks the original, tensors replaced by
// views of a placeholder storage per source storage.
class Planner : public IValueBuilder {
 public:
  explicit Planner(StagingPlan& plan) : plan_(plan) {}

  void tensor(const at::Tensor& original) {
    // A conjugate or negative view has no bits of its own to copy.
    const at::Tensor tensor = original.resolve_conj().resolve_neg();
    const c10::StorageImpl* source = tensor.storage().unsafeGetStorageImpl();
    auto [staged, added] = staged_.try_emplace(source);
    if (added) {
      staged->second = c10::Storage(
          c10::Storage::use_byte_size_t(),
          tensor.storage().nbytes(),
          c10::DataPtr(nullptr, c10::Device(c10::kCPU)),
          nullptr,
          false);
      plan_.staged.push_back(staged->second);
      plan_.sources.push_back(tensor.storage()); // held: no other storage takes its address
    }
    at::Tensor view = at::empty({0}, at::TensorOptions().dtype(tensor.dtype()));
    view.set_(staged->second, tensor.storage_offset(), tensor.sizes(), tensor.strides());
    view.set_requires_grad(tensor.requires_grad());
    IValueBuilder::tensor(view);
  }

 private:
  StagingPlan& plan_;
  std::unordered_map<const c10::StorageImpl*, c10::Storage> staged_;
};

} // namespace

StagingPlan plan_staging(const c10::IValue& state_dict) {
  StagingPlan plan;
  Planner planner(plan);
  KeyPath path;
  visit_state(state_dict, planner, path);
  plan.state = planner.take();
  return plan;
}

std::vector<StorageSlice> source_slices(const StagingPlan& plan, const std::vector<StorageSlice>& slices) {
  std::unordered_map<const c10::StorageImpl*, size_t> index_of;
  for (size_t i = 0; i < plan.staged.size(); ++i) {
    index_of.emplace(plan.staged[i].unsafeGetStorageImpl(), i);
  }
  std::vector<StorageSlice> sources;
  sources.reserve(slices.size());
  for (const StorageSlice& slice : slices) {
    const auto found = index_of.find(slice.storage.unsafeGetStorageImpl());
    TORCH_INTERNAL_ASSERT(found != index_of.end(), "a write plan takes the bytes of a storage that staging did not plan");
    sources.push_back({plan.sources[found->second], slice.offset, slice.size});
  }
  return sources;
}

} // namespace torch_ext::detail
