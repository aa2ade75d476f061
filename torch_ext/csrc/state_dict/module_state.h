#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <string>
#include <unordered_map>
#include <vector>

namespace torch_ext::detail {

struct NamedTensor {
  std::string name;
  at::Tensor tensor; // the module's own, not detached
  bool is_parameter;
};

// The parameters and buffers of `module` under the names and in the order of
// Python's Module.state_dict(): per module its own parameters, then its own
// buffers, then each child's, depth first. (libtorch's recursive
// named_parameters() and named_buffers() list every parameter before any
// buffer, hence the walk.)
std::vector<NamedTensor> module_state(const torch::nn::Module& module);

// The name of each parameter of `module`, keyed by its TensorImpl; a tied
// parameter keeps its first name, as in Python's named_parameters().
std::unordered_map<const c10::TensorImpl*, std::string> parameter_names(const torch::nn::Module& module);

} // namespace torch_ext::detail
