#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <torch_ext/export.h>

namespace torch_ext {

// A libtorch training state in the layout of Python's
// torch.distributed.checkpoint.state_dict, so that a checkpoint written from
// C++ (write_checkpoint_file) resumes in Python with
// model.load_state_dict(sd["model"]) and DCP's
// set_optimizer_state_dict(model, optim, optim_state_dict=sd["optim"]),
// and the other way round.
//
//   c10::impl::GenericDict state(c10::StringType::get(), c10::AnyType::get());
//   state.insert("model", torch_ext::get_model_state_dict(model));
//   state.insert("optim", torch_ext::get_optimizer_state_dict(model, optimizer));
//   state.insert("rng", torch_ext::get_rng_state());
//   torch_ext::write_checkpoint_file("step_100.pt", state);

// The parameters and buffers of `module` under the names and in the order of
// Python's Module.state_dict(): per module its own parameters, then its own
// buffers, then each child's, recursively (`0.weight`, `bn.running_mean`,
// `bn.num_batches_tracked`). A tensor held under two names (tied weights) is
// listed under both, as Python does. The tensors are detached and share
// memory with the module. A dict marked as an OrderedDict (no _metadata).
TORCH_EXT_API c10::IValue get_model_state_dict(const torch::nn::Module& module);

// Copies each tensor of `state_dict` (a dict of str to tensor, such as
// get_model_state_dict or Python's state_dict() gives) into the parameter or
// buffer of that name, in place, without recording gradients. Nothing is
// copied unless everything matches; else one error lists every problem:
// shapes and dtypes that differ, values that are not tensors and, with
// `strict`, names the module lacks or the dict lacks. Unlike Python, a dtype
// mismatch is an error even without `strict` (no silent conversion).
TORCH_EXT_API void set_model_state_dict(torch::nn::Module& module, const c10::IValue& state_dict, bool strict = true);

// The state of `optimizer` as DCP's get_optimizer_state_dict(model, optim)
// gives it in Python, parameters named as in get_model_state_dict:
//   {"state": {"0.weight": {"step": tensor(3.), "exp_avg": ..., ...}, ...},
//    "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), ...,
//                      "params": ["0.weight", ...]}]}
// Every hyperparameter Python's optimizer has is there, in Python's order
// and with its types (betas a tuple, foreach None); those libtorch lacks
// (maximize, foreach, capturable, differentiable, fused,
// decoupled_weight_decay) hold the value libtorch behaves as. A
// hyperparameter equal to Python's default of int 0 (weight_decay,
// momentum, ...) is written as that int, so the dict of a default-built
// optimizer equals Python's. `step` is a float32 0-dim tensor, as in Python;
// the other state tensors share memory with the optimizer. Parameters
// without state (none before the first step) are absent from "state", as in
// Python's Optimizer.state_dict(); unlike DCP's Python function, no step is
// taken to create state. For SGD, Adam, AdamW, RMSprop and Adagrad; any
// other optimizer, or a parameter that is not one of `model`'s, is an error
// naming it.
TORCH_EXT_API c10::IValue get_optimizer_state_dict(
    const torch::nn::Module& model, const torch::optim::Optimizer& optimizer);

// Loads `state_dict` (from get_optimizer_state_dict, or from DCP's in Python
// after a trip through a file) into `optimizer`, as DCP's
// set_optimizer_state_dict does: each of the optimizer's param groups takes
// its hyperparameters from the loaded group that names the same parameters,
// and the optimizer's state is replaced by copies of the loaded tensors
// (converted to each parameter's dtype, as Python does; Adam's float step
// becomes libtorch's int64 count). Python's hyperparameters libtorch lacks
// must hold values libtorch can honour (maximize, capturable and
// differentiable False, decoupled_weight_decay as the class says; foreach
// and fused, which pick Python's kernels, None or a bool); they may be
// absent, as in an older Python's dict. `initial_lr` (an LR scheduler's) is
// ignored.
// Anything else (a missing, unknown or mistyped entry, a shape that is not
// the parameter's, groups that do not match) throws an error naming it, and
// leaves the optimizer as it was.
TORCH_EXT_API void set_optimizer_state_dict(
    const torch::nn::Module& model, torch::optim::Optimizer& optimizer, const c10::IValue& state_dict);

// The state of the default CPU generator as a uint8 tensor, byte for byte
// what Python's torch.get_rng_state() gives.
TORCH_EXT_API at::Tensor get_rng_state();

// Restores the default CPU generator from a tensor of get_rng_state() or
// Python's torch.get_rng_state().
TORCH_EXT_API void set_rng_state(const at::Tensor& state);

} // namespace torch_ext
