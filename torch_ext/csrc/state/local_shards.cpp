#include <torch_ext/local_shards.h>

#include <utility>

#include <c10/util/Exception.h>
#include <torch/custom_class.h>

#include <torch_ext/checkpoint_values.h>

namespace torch_ext {
namespace {

// From Python: torch.classes.torch_ext.LocalShards(tensors, offsets,
// global_shape), part i being tensors[i] at offsets[i].
const auto registration =
    torch::class_<LocalShards>("torch_ext", "LocalShards")
        .def(torch::init([](std::vector<at::Tensor> tensors,
                            std::vector<std::vector<int64_t>> offsets,
                            std::vector<int64_t> global_shape) {
          TORCH_CHECK_VALUE(
              tensors.size() == offsets.size(),
              "LocalShards expected one offsets per tensor, got ",
              tensors.size(),
              " tensors and ",
              offsets.size(),
              " offsets");
          std::vector<Shard> shards;
          for (size_t i = 0; i < tensors.size(); ++i) {
            shards.push_back(Shard{std::move(tensors[i]), std::move(offsets[i])});
          }
          return c10::make_intrusive<LocalShards>(std::move(shards), std::move(global_shape));
        }))
        .def("global_shape", [](const c10::intrusive_ptr<LocalShards>& self) { return self->global_shape(); })
        .def("tensors", [](const c10::intrusive_ptr<LocalShards>& self) {
          std::vector<at::Tensor> tensors;
          for (const Shard& shard : self->shards()) {
            tensors.push_back(shard.tensor);
          }
          return tensors;
        })
        .def("offsets", [](const c10::intrusive_ptr<LocalShards>& self) {
          std::vector<std::vector<int64_t>> offsets;
          for (const Shard& shard : self->shards()) {
            offsets.push_back(shard.offsets);
          }
          return offsets;
        });

} // namespace

LocalShards::LocalShards(std::vector<Shard> shards, std::vector<int64_t> global_shape)
    : shards_(std::move(shards)), global_shape_(std::move(global_shape)) {
  TORCH_CHECK_VALUE(!shards_.empty(), "LocalShards expected at least one part (an empty tensor for none)");
  for (const int64_t size : global_shape_) {
    TORCH_CHECK_VALUE(size >= 0, "LocalShards expected a global shape of sizes >= 0, got ", c10::IntArrayRef(global_shape_));
  }
  for (size_t i = 0; i < shards_.size(); ++i) {
    const at::Tensor& tensor = shards_[i].tensor;
    const std::vector<int64_t>& offsets = shards_[i].offsets;
    TORCH_CHECK_VALUE(
        value_kind(tensor) == ValueKind::Tensor,
        "LocalShards expected dense tensors of a dtype a checkpoint holds; part ",
        i,
        " is not one");
    TORCH_CHECK_VALUE(
        tensor.dim() == static_cast<int64_t>(global_shape_.size()) && offsets.size() == global_shape_.size(),
        "LocalShards of a global shape ",
        c10::IntArrayRef(global_shape_),
        " expected parts and offsets of ",
        global_shape_.size(),
        " dims; part ",
        i,
        " has sizes ",
        tensor.sizes(),
        " at offsets ",
        c10::IntArrayRef(offsets));
    for (size_t d = 0; d < offsets.size(); ++d) {
      TORCH_CHECK_VALUE(
          offsets[d] >= 0 && offsets[d] <= global_shape_[d] && tensor.size(static_cast<int64_t>(d)) <= global_shape_[d] - offsets[d],
          "LocalShards: part ",
          i,
          " of sizes ",
          tensor.sizes(),
          " at offsets ",
          c10::IntArrayRef(offsets),
          " lies outside the global shape ",
          c10::IntArrayRef(global_shape_));
    }
    TORCH_CHECK_VALUE(
        tensor.scalar_type() == dtype(),
        "LocalShards expected parts of one dtype; part 0 is ",
        dtype(),
        ", part ",
        i,
        " is ",
        tensor.scalar_type());
  }
}

c10::IValue make_local_shards(std::vector<Shard> shards, std::vector<int64_t> global_shape) {
  return c10::make_intrusive<LocalShards>(std::move(shards), std::move(global_shape));
}

c10::intrusive_ptr<LocalShards> as_local_shards(const c10::IValue& value) {
  if (!value.isObject() || value.toObjectRef().type() != c10::getCustomClassType<c10::intrusive_ptr<LocalShards>>()) {
    return {};
  }
  return value.toCustomClass<LocalShards>();
}

} // namespace torch_ext
