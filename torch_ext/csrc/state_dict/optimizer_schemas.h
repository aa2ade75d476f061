#pragma once

#include <memory>

#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>

#include "optimizer_entries.h"

namespace torch_ext::detail {

// How one libtorch optimizer's param groups and per-parameter state map to
// those of its Python namesake, in the keys, order and types of Python's
// Optimizer.state_dict() (torch 2.13). Each OptimizerStateSchema has:
//   name;
//   group(options): a param group's hyperparameters, without "params";
//   options(entries): the reverse, reading every hyperparameter;
//   state(param_state): one parameter's state;
//   state(entries, options, param): the reverse; nullptr for no state;
//   state_for_every_parameter: whether libtorch's step needs a state for
//     every parameter (Adagrad makes them when it is built).
template <class Optimizer>
struct OptimizerStateSchema;

inline void put_if_defined(Dict& dict, const char* key, const at::Tensor& tensor) {
  if (tensor.defined()) {
    dict.insert(key, tensor.detach());
  }
}

template <>
struct OptimizerStateSchema<torch::optim::SGD> {
  using Options = torch::optim::SGDOptions;
  using State = torch::optim::SGDParamState;
  static constexpr const char* name = "SGD";
  static constexpr bool state_for_every_parameter = false;

  static Dict group(const Options& options) {
    Dict group = new_dict();
    group.insert("lr", options.lr());
    group.insert("momentum", zero_as_int(options.momentum()));
    group.insert("dampening", zero_as_int(options.dampening()));
    group.insert("weight_decay", zero_as_int(options.weight_decay()));
    group.insert("nesterov", options.nesterov());
    group.insert("maximize", false);
    group.insert("foreach", c10::IValue());
    group.insert("differentiable", false);
    group.insert("fused", c10::IValue());
    return group;
  }

  static Options options(Entries& group) {
    Options options(group.number("lr"));
    options.momentum(group.number("momentum"));
    options.dampening(group.number("dampening"));
    options.weight_decay(group.number("weight_decay"));
    options.nesterov(group.flag("nesterov"));
    group.python_only("maximize", false, name);
    group.kernel_choice("foreach");
    group.python_only("differentiable", false, name);
    group.kernel_choice("fused");
    return options;
  }

  static Dict state(const State& state) {
    Dict dict = new_dict();
    put_if_defined(dict, "momentum_buffer", state.momentum_buffer());
    return dict;
  }

  // A missing or None momentum_buffer means none yet: both SGDs then start
  // one from the next gradient.
  static std::unique_ptr<State> state(Entries& entries, const Options& /*options*/, const at::Tensor& param) {
    if (!entries.has_tensor("momentum_buffer")) {
      entries.ignore("momentum_buffer");
      return nullptr;
    }
    auto state = std::make_unique<State>();
    state->momentum_buffer(entries.tensor("momentum_buffer", param));
    return state;
  }
};

// Python's AdamW is its Adam with decoupled_weight_decay=True; libtorch has
// two classes with the same fields.
template <class OptionsT, class StateT, bool decoupled_weight_decay>
struct AdamStateSchema {
  using Options = OptionsT;
  using State = StateT;
  static constexpr const char* name = decoupled_weight_decay ? "AdamW" : "Adam";
  static constexpr bool state_for_every_parameter = false;

  static Dict group(const Options& options) {
    Dict group = new_dict();
    group.insert("lr", options.lr());
    group.insert("betas", c10::ivalue::Tuple::create(std::get<0>(options.betas()), std::get<1>(options.betas())));
    group.insert("eps", options.eps());
    // Python's default weight_decay: the int 0 for Adam, 1e-2 for AdamW.
    group.insert(
        "weight_decay",
        decoupled_weight_decay ? c10::IValue(options.weight_decay()) : zero_as_int(options.weight_decay()));
    group.insert("amsgrad", options.amsgrad());
    group.insert("maximize", false);
    group.insert("foreach", c10::IValue());
    group.insert("capturable", false);
    group.insert("differentiable", false);
    group.insert("fused", c10::IValue());
    group.insert("decoupled_weight_decay", decoupled_weight_decay);
    return group;
  }

  static Options options(Entries& group) {
    Options options(group.number("lr"));
    options.betas(group.pair("betas"));
    options.eps(group.number("eps"));
    options.weight_decay(group.number("weight_decay"));
    options.amsgrad(group.flag("amsgrad"));
    group.python_only("maximize", false, name);
    group.kernel_choice("foreach");
    group.python_only("capturable", false, name);
    group.python_only("differentiable", false, name);
    group.kernel_choice("fused");
    group.python_only(
        "decoupled_weight_decay",
        decoupled_weight_decay,
        name,
        decoupled_weight_decay ? " (load it into a torch::optim::Adam)" : " (load it into a torch::optim::AdamW)");
    return options;
  }

  static Dict state(const State& state) {
    Dict dict = new_dict();
    dict.insert("step", step_tensor(state.step()));
    put_if_defined(dict, "exp_avg", state.exp_avg());
    put_if_defined(dict, "exp_avg_sq", state.exp_avg_sq());
    put_if_defined(dict, "max_exp_avg_sq", state.max_exp_avg_sq());
    return dict;
  }

  static std::unique_ptr<State> state(Entries& entries, const Options& options, const at::Tensor& param) {
    auto state = std::make_unique<State>();
    state->step(entries.step("step"));
    state->exp_avg(entries.tensor("exp_avg", param));
    state->exp_avg_sq(entries.tensor("exp_avg_sq", param));
    // Kept when amsgrad is off, as Python keeps it.
    if (options.amsgrad() || entries.has_tensor("max_exp_avg_sq")) {
      state->max_exp_avg_sq(entries.tensor("max_exp_avg_sq", param));
    } else {
      entries.ignore("max_exp_avg_sq");
    }
    return state;
  }
};

template <>
struct OptimizerStateSchema<torch::optim::Adam> : AdamStateSchema<torch::optim::AdamOptions, torch::optim::AdamParamState, false> {};
template <>
struct OptimizerStateSchema<torch::optim::AdamW> : AdamStateSchema<torch::optim::AdamWOptions, torch::optim::AdamWParamState, true> {};

template <>
struct OptimizerStateSchema<torch::optim::RMSprop> {
  using Options = torch::optim::RMSpropOptions;
  using State = torch::optim::RMSpropParamState;
  static constexpr const char* name = "RMSprop";
  static constexpr bool state_for_every_parameter = false;

  static Dict group(const Options& options) {
    Dict group = new_dict();
    group.insert("lr", options.lr());
    group.insert("momentum", zero_as_int(options.momentum()));
    group.insert("alpha", options.alpha());
    group.insert("eps", options.eps());
    group.insert("centered", options.centered());
    group.insert("weight_decay", zero_as_int(options.weight_decay()));
    group.insert("capturable", false);
    group.insert("foreach", c10::IValue());
    group.insert("maximize", false);
    group.insert("differentiable", false);
    return group;
  }

  static Options options(Entries& group) {
    Options options(group.number("lr"));
    options.momentum(group.number("momentum"));
    options.alpha(group.number("alpha"));
    options.eps(group.number("eps"));
    options.centered(group.flag("centered"));
    options.weight_decay(group.number("weight_decay"));
    group.python_only("capturable", false, name);
    group.kernel_choice("foreach");
    group.python_only("maximize", false, name);
    group.python_only("differentiable", false, name);
    return options;
  }

  static Dict state(const State& state) {
    Dict dict = new_dict();
    dict.insert("step", step_tensor(state.step()));
    put_if_defined(dict, "square_avg", state.square_avg());
    put_if_defined(dict, "momentum_buffer", state.momentum_buffer());
    put_if_defined(dict, "grad_avg", state.grad_avg());
    return dict;
  }

  // Both RMSprops make momentum_buffer only with momentum, grad_avg only
  // when centered, and keep them when those are later switched off.
  static std::unique_ptr<State> state(Entries& entries, const Options& options, const at::Tensor& param) {
    auto state = std::make_unique<State>();
    state->step(entries.step("step"));
    state->square_avg(entries.tensor("square_avg", param));
    if (options.momentum() > 0 || entries.has_tensor("momentum_buffer")) {
      state->momentum_buffer(entries.tensor("momentum_buffer", param));
    } else {
      entries.ignore("momentum_buffer");
    }
    if (options.centered() || entries.has_tensor("grad_avg")) {
      state->grad_avg(entries.tensor("grad_avg", param));
    } else {
      entries.ignore("grad_avg");
    }
    return state;
  }
};

template <>
struct OptimizerStateSchema<torch::optim::Adagrad> {
  using Options = torch::optim::AdagradOptions;
  using State = torch::optim::AdagradParamState;
  static constexpr const char* name = "Adagrad";
  static constexpr bool state_for_every_parameter = true;

  static Dict group(const Options& options) {
    Dict group = new_dict();
    group.insert("lr", options.lr());
    group.insert("lr_decay", zero_as_int(options.lr_decay()));
    group.insert("eps", options.eps());
    group.insert("weight_decay", zero_as_int(options.weight_decay()));
    group.insert("initial_accumulator_value", zero_as_int(options.initial_accumulator_value()));
    group.insert("foreach", c10::IValue());
    group.insert("maximize", false);
    group.insert("differentiable", false);
    group.insert("fused", c10::IValue());
    return group;
  }

  static Options options(Entries& group) {
    Options options(group.number("lr"));
    options.lr_decay(group.number("lr_decay"));
    options.eps(group.number("eps"));
    options.weight_decay(group.number("weight_decay"));
    options.initial_accumulator_value(group.number("initial_accumulator_value"));
    group.kernel_choice("foreach");
    group.python_only("maximize", false, name);
    group.python_only("differentiable", false, name);
    group.kernel_choice("fused");
    return options;
  }

  static Dict state(const State& state) {
    Dict dict = new_dict();
    dict.insert("step", step_tensor(state.step()));
    put_if_defined(dict, "sum", state.sum());
    return dict;
  }

  static std::unique_ptr<State> state(Entries& entries, const Options& /*options*/, const at::Tensor& param) {
    auto state = std::make_unique<State>();
    state->step(entries.step("step"));
    state->sum(entries.tensor("sum", param));
    return state;
  }
};

} // namespace torch_ext::detail
