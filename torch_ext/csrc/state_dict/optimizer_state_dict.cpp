#include <torch_ext/state_dict.h>

#include <algorithm>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <c10/util/Exception.h>
#include <c10/util/Type.h>

#include "module_state.h"
#include "optimizer_entries.h"
#include "optimizer_schemas.h"

namespace torch_ext {
namespace {

using detail::Dict;
using detail::Entries;
using detail::KeyPath;
using detail::OptimizerStateSchema;

// The model's name for each parameter of `optimizer`, group by group.
std::vector<std::vector<std::string>> parameter_names(
    const torch::nn::Module& model, const torch::optim::Optimizer& optimizer, const char* function) {
  const auto names = detail::parameter_names(model);
  std::vector<std::vector<std::string>> groups;
  for (const auto& group : optimizer.param_groups()) {
    groups.emplace_back();
    for (const auto& param : group.params()) {
      const auto found = names.find(param.unsafeGetTensorImpl());
      TORCH_CHECK(
          found != names.end(),
          function,
          ": parameter ",
          groups.back().size(),
          " of the optimizer's param group ",
          groups.size() - 1,
          " is not a parameter of the model");
      groups.back().push_back(found->second);
    }
  }
  return groups;
}

std::string sorted_list(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  std::string joined;
  for (const auto& name : names) {
    joined += (joined.empty() ? "'" : ", '") + name + "'";
  }
  return "[" + joined + "]";
}

template <class Optimizer>
c10::IValue get_state_dict(const torch::nn::Module& model, const Optimizer& optimizer) {
  using L = OptimizerStateSchema<Optimizer>;
  const auto names = parameter_names(model, optimizer, "get_optimizer_state_dict");
  Dict state = detail::new_dict();
  c10::impl::GenericList groups(c10::AnyType::get());
  for (size_t g = 0; g < names.size(); ++g) {
    const auto& group = optimizer.param_groups()[g];
    Dict dict = L::group(static_cast<const typename L::Options&>(group.options()));
    for (size_t i = 0; i < names[g].size(); ++i) {
      const auto found = optimizer.state().find(group.params()[i].unsafeGetTensorImpl());
      if (found != optimizer.state().end() && found->second != nullptr) {
        state.insert(names[g][i], L::state(static_cast<const typename L::State&>(*found->second)));
      }
    }
    dict.insert("params", c10::List<std::string>(names[g]));
    groups.push_back(std::move(dict));
  }
  Dict state_dict = detail::new_dict();
  state_dict.insert("state", std::move(state));
  state_dict.insert("param_groups", std::move(groups));
  return state_dict;
}

// Reads everything first and changes the optimizer only once all of it is
// valid.
template <class Optimizer>
void set_state_dict(const torch::nn::Module& model, Optimizer& optimizer, const c10::IValue& state_dict) {
  using L = OptimizerStateSchema<Optimizer>;
  using Options = typename L::Options;
  const auto names = parameter_names(model, optimizer, "set_optimizer_state_dict");
  std::unordered_map<std::string, std::pair<size_t, at::Tensor>> params; // name: (group, param)
  for (size_t g = 0; g < names.size(); ++g) {
    for (size_t i = 0; i < names[g].size(); ++i) {
      params.emplace(names[g][i], std::make_pair(g, optimizer.param_groups()[g].params()[i]));
    }
  }
  Entries entries(state_dict, KeyPath("optim_state_dict"));

  // Each group of the optimizer takes the loaded group that names its
  // parameters, as DCP matches them.
  const c10::IValue& loaded_groups = entries.at("param_groups");
  TORCH_CHECK_TYPE(
      loaded_groups.isList(), entries.path("param_groups").describe(), " is a ", loaded_groups.tagKind(), ", expected a list");
  const auto loaded = loaded_groups.toListRef();
  TORCH_CHECK(
      loaded.size() == names.size(),
      entries.path("param_groups").describe(),
      " holds ",
      loaded.size(),
      " param groups, but the optimizer has ",
      names.size());
  std::vector<Entries> groups;
  std::vector<std::vector<std::string>> loaded_names(loaded.size());
  std::unordered_map<std::string, size_t> loaded_group_of;
  for (size_t j = 0; j < loaded.size(); ++j) {
    KeyPath group_path = entries.path("param_groups");
    group_path.push_index(j);
    groups.emplace_back(loaded[j], std::move(group_path));
    const c10::IValue& list = groups.back().at("params");
    const std::string path = groups.back().path("params").describe();
    TORCH_CHECK_TYPE(list.isList(), path, " is a ", list.tagKind(), ", expected a list of parameter names");
    for (const auto& name : list.toListRef()) {
      TORCH_CHECK_TYPE(name.isString(), path, " holds a ", name.tagKind(), ", expected parameter names (str)");
      TORCH_CHECK(
          params.count(name.toStringRef()) != 0,
          path,
          " names '",
          name.toStringRef(),
          "', which is not a parameter of the optimizer");
      TORCH_CHECK(
          loaded_group_of.emplace(name.toStringRef(), j).second, path, " names '", name.toStringRef(), "' twice");
      loaded_names[j].push_back(name.toStringRef());
    }
  }
  const std::string reader = std::string("libtorch's ") + L::name;
  std::vector<Options> options;
  for (size_t g = 0; g < names.size(); ++g) {
    size_t j = g;
    if (!names[g].empty()) {
      const auto found = loaded_group_of.find(names[g].front());
      TORCH_CHECK(
          found != loaded_group_of.end(),
          entries.path("param_groups").describe(),
          " names no '",
          names[g].front(),
          "', a parameter of the optimizer's param group ",
          g);
      j = found->second;
    }
    TORCH_CHECK(
        sorted_list(names[g]) == sorted_list(loaded_names[j]),
        "set_optimizer_state_dict: the optimizer's param group ",
        g,
        " holds ",
        sorted_list(names[g]),
        ", but ",
        groups[j].path("params").describe(),
        " holds ",
        sorted_list(loaded_names[j]));
    options.push_back(L::options(groups[j]));
    groups[j].ignore("initial_lr"); // an LR scheduler's; libtorch's keep their own
    groups[j].check_all_read(reader);
  }

  Entries state(entries.at("state"), entries.path("state"));
  std::vector<std::pair<void*, std::unique_ptr<torch::optim::OptimizerParamState>>> new_state;
  const std::vector<std::string> keys = state.keys();
  const std::unordered_set<std::string> with_state(keys.begin(), keys.end());
  for (const auto& name : keys) {
    const auto found = params.find(name);
    TORCH_CHECK(
        found != params.end(), state.path(name).describe(), ": '", name, "' is not a parameter of the optimizer");
    const auto& [group, param] = found->second;
    Entries param_entries(state.at(name), state.path(name));
    auto param_state = L::state(param_entries, options[group], param);
    param_entries.check_all_read(reader + " state");
    if (param_state != nullptr) {
      new_state.emplace_back(param.unsafeGetTensorImpl(), std::move(param_state));
    }
  }
  if (L::state_for_every_parameter) {
    for (const auto& group : names) {
      for (const auto& name : group) {
        TORCH_CHECK(
            with_state.count(name) != 0,
            state.path().root(),
            " has no entry '",
            state.path(name).str(),
            "', but ",
            reader,
            " needs a state for every parameter");
      }
    }
  }
  entries.check_all_read("an optimizer state dict");

  for (size_t g = 0; g < options.size(); ++g) {
    optimizer.param_groups()[g].set_options(std::make_unique<Options>(options[g]));
  }
  // Replaced whole, as Python's Optimizer.load_state_dict does.
  optimizer.state().clear();
  for (auto& [key, param_state] : new_state) {
    optimizer.state()[key] = std::move(param_state);
  }
}

template <class T, class Base>
using like_const = std::conditional_t<std::is_const_v<Base>, const T, T>;

// Calls `visit` with `optimizer` as the libtorch class it is.
template <class Base, class Visit>
void visit_optimizer(Base& optimizer, const char* function, Visit&& visit) {
  using namespace torch::optim;
  if (auto* sgd = dynamic_cast<like_const<SGD, Base>*>(&optimizer)) {
    visit(*sgd);
  } else if (auto* adam = dynamic_cast<like_const<Adam, Base>*>(&optimizer)) {
    visit(*adam);
  } else if (auto* adamw = dynamic_cast<like_const<AdamW, Base>*>(&optimizer)) {
    visit(*adamw);
  } else if (auto* rmsprop = dynamic_cast<like_const<RMSprop, Base>*>(&optimizer)) {
    visit(*rmsprop);
  } else if (auto* adagrad = dynamic_cast<like_const<Adagrad, Base>*>(&optimizer)) {
    visit(*adagrad);
  } else {
    TORCH_CHECK(
        false,
        function,
        ": ",
        c10::demangle(typeid(optimizer).name()),
        " is not supported; expected torch::optim::SGD, Adam, AdamW, RMSprop or Adagrad");
  }
}

} // namespace

c10::IValue get_optimizer_state_dict(const torch::nn::Module& model, const torch::optim::Optimizer& optimizer) {
  c10::IValue state_dict;
  visit_optimizer(
      optimizer, "get_optimizer_state_dict", [&](const auto& typed) { state_dict = get_state_dict(model, typed); });
  return state_dict;
}

void set_optimizer_state_dict(
    const torch::nn::Module& model, torch::optim::Optimizer& optimizer, const c10::IValue& state_dict) {
  visit_optimizer(
      optimizer, "set_optimizer_state_dict", [&](auto& typed) { set_state_dict(model, typed, state_dict); });
}

} // namespace torch_ext
