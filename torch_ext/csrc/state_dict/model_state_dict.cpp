#include <torch_ext/state_dict.h>

#include <sstream>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include <c10/util/Exception.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <torch_ext/checkpoint_values.h>

#include "module_state.h"

namespace torch_ext {
namespace {

std::string quoted_list(const std::vector<std::string>& names) {
  std::ostringstream out;
  for (size_t i = 0; i < names.size(); ++i) {
    out << (i ? ", " : "") << '\'' << names[i] << '\'';
  }
  return out.str();
}

} // namespace

c10::IValue get_model_state_dict(const torch::nn::Module& module) {
  c10::impl::GenericDict state_dict(c10::StringType::get(), c10::AnyType::get());
  for (const auto& entry : detail::module_state(module)) {
    state_dict.insert(entry.name, entry.tensor.detach());
  }
  mark_ordered_dict(state_dict, c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get()));
  return state_dict;
}

void set_model_state_dict(torch::nn::Module& module, const c10::IValue& state_dict, bool strict) {
  TORCH_CHECK_TYPE(
      state_dict.isGenericDict(), "set_model_state_dict expected a dict of str to tensor, got ", state_dict.tagKind());
  const auto dict = state_dict.toGenericDict();

  std::vector<std::string> missing;
  std::vector<std::string> mismatches;
  std::vector<std::pair<at::Tensor, at::Tensor>> copies; // (into, from)
  std::unordered_set<std::string> names;
  for (const auto& entry : detail::module_state(module)) {
    names.insert(entry.name);
    const auto found = dict.find(entry.name);
    if (found == dict.end()) {
      missing.push_back(entry.name);
      continue;
    }
    const c10::IValue& value = found->value();
    if (!value.isTensor()) {
      mismatches.push_back("'" + entry.name + "' is a " + value.tagKind() + ", expected a tensor");
      continue;
    }
    const at::Tensor& source = value.toTensor();
    if (source.sizes() != entry.tensor.sizes()) {
      mismatches.push_back(
          c10::str("'", entry.name, "' has shape ", source.sizes(), ", the module's is ", entry.tensor.sizes()));
    } else if (source.scalar_type() != entry.tensor.scalar_type()) {
      mismatches.push_back(c10::str(
          "'", entry.name, "' has dtype ", source.scalar_type(), ", the module's is ", entry.tensor.scalar_type()));
    } else {
      copies.emplace_back(entry.tensor, source);
    }
  }
  std::vector<std::string> unexpected;
  for (const auto& entry : dict) {
    if (!entry.key().isString()) {
      mismatches.push_back(std::string("a key of type ") + entry.key().tagKind() + ", expected str");
    } else if (names.count(entry.key().toStringRef()) == 0) {
      unexpected.push_back(entry.key().toStringRef());
    }
  }

  std::ostringstream problems;
  if (strict && !missing.empty()) {
    problems << "\n  missing keys: " << quoted_list(missing);
  }
  if (strict && !unexpected.empty()) {
    problems << "\n  unexpected keys: " << quoted_list(unexpected);
  }
  for (const auto& mismatch : mismatches) {
    problems << "\n  " << mismatch;
  }
  TORCH_CHECK(
      problems.tellp() == 0,
      "set_model_state_dict: the state dict does not match the module (nothing was copied):",
      problems.str());

  torch::NoGradGuard no_grad;
  for (auto& [into, from] : copies) {
    into.copy_(from);
  }
}

} // namespace torch_ext
