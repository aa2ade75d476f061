#include "module_state.h"

namespace torch_ext::detail {
namespace {

void walk(const torch::nn::Module& module, const std::string& prefix, std::vector<NamedTensor>& out) {
  for (const auto& parameter : module.named_parameters(/*recurse=*/false)) {
    out.push_back({prefix + parameter.key(), parameter.value(), true});
  }
  for (const auto& buffer : module.named_buffers(/*recurse=*/false)) {
    out.push_back({prefix + buffer.key(), buffer.value(), false});
  }
  for (const auto& child : module.named_children()) {
    walk(*child.value(), prefix + child.key() + ".", out);
  }
}

} // namespace

std::vector<NamedTensor> module_state(const torch::nn::Module& module) {
  std::vector<NamedTensor> state;
  walk(module, "", state);
  return state;
}

std::unordered_map<const c10::TensorImpl*, std::string> parameter_names(const torch::nn::Module& module) {
  std::unordered_map<const c10::TensorImpl*, std::string> names;
  for (const auto& entry : module_state(module)) {
    if (entry.is_parameter) {
      names.emplace(entry.tensor.unsafeGetTensorImpl(), entry.name); // keeps the first
    }
  }
  return names;
}

} // namespace torch_ext::detail
