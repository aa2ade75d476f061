// Trains or resumes a small MLP with torch_ext's state dicts, for
// test/test_state_dict.py to compare with Python and DCP:
//   state_dict_resume train <optimizer> <steps> <dir>
//     writes <dir>/initial.pt {"model"}, <dir>/batches.pt {"x": [...], "y": [...]}
//     (steps + 1 batches), trains <steps> steps, writes <dir>/checkpoint.pt
//     {"model", "optim", "rng"}, takes one more step, writes <dir>/after.pt
//     {"model", "optim"}.
//   state_dict_resume resume <optimizer> <checkpoint.pt> <batch.pt> <out.pt>
//     loads {"model", "optim", "rng"} into a fresh model and optimizer (built
//     with libtorch's default hyperparameters), takes one step on the batch
//     {"x", "y"}, writes {"loaded_optim", "model", "optim", "rng"}.
//   state_dict_resume rng <seed> <out.pt>
//     writes {"state": the RNG state after manual_seed(seed),
//     "draws": randn(100) drawn from it}.
// <optimizer> names a configuration that the test mirrors (OPTIMIZERS there).
// Prints "error: <message>" and exits 1 on failure.
#include <torch_ext/checkpoint_file.h>
#include <torch_ext/state_dict.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include <torch/torch.h>

namespace {

using c10::impl::GenericDict;
namespace optim = torch::optim;

GenericDict new_dict() {
  return GenericDict(c10::StringType::get(), c10::AnyType::get());
}

torch::nn::Sequential make_model() {
  return torch::nn::Sequential(
      torch::nn::Linear(4, 8), torch::nn::ReLU(), torch::nn::BatchNorm1d(8), torch::nn::Linear(8, 3));
}

// With `defaults`, libtorch's defaults: the hyperparameters are to be loaded.
std::unique_ptr<optim::Optimizer> make_optimizer(const std::string& name, torch::nn::Sequential& model, bool defaults) {
  auto params = model->parameters();
  if (name == "sgd") {
    return std::make_unique<optim::SGD>(params, optim::SGDOptions(defaults ? 1.0 : 0.1));
  }
  if (name == "sgd_momentum") {
    return std::make_unique<optim::SGD>(
        params,
        defaults ? optim::SGDOptions(1.0) : optim::SGDOptions(0.1).momentum(0.9).dampening(0.1).weight_decay(0.01));
  }
  if (name == "sgd_nesterov") {
    return std::make_unique<optim::SGD>(
        params, defaults ? optim::SGDOptions(1.0) : optim::SGDOptions(0.1).momentum(0.9).nesterov(true));
  }
  if (name == "adam") {
    return std::make_unique<optim::Adam>(params, defaults ? optim::AdamOptions() : optim::AdamOptions(0.01));
  }
  if (name == "adam_groups") { // the first Linear in a group of its own
    std::vector<at::Tensor> rest;
    for (size_t i = 1; i < model->size(); ++i) {
      for (const auto& param : model[i]->parameters()) {
        rest.push_back(param);
      }
    }
    std::vector<optim::OptimizerParamGroup> groups;
    groups.emplace_back(model[0]->parameters(), std::make_unique<optim::AdamOptions>(defaults ? 1e-3 : 0.02));
    groups.emplace_back(rest);
    return std::make_unique<optim::Adam>(groups, defaults ? optim::AdamOptions() : optim::AdamOptions(0.01));
  }
  if (name == "adam_amsgrad") {
    return std::make_unique<optim::Adam>(
        params,
        defaults ? optim::AdamOptions() : optim::AdamOptions(0.01).betas({0.8, 0.99}).weight_decay(0.01).amsgrad(true));
  }
  if (name == "adamw") {
    return std::make_unique<optim::AdamW>(params, defaults ? optim::AdamWOptions() : optim::AdamWOptions(0.01));
  }
  if (name == "rmsprop") {
    return std::make_unique<optim::RMSprop>(params, defaults ? optim::RMSpropOptions() : optim::RMSpropOptions(0.01));
  }
  if (name == "rmsprop_centered") {
    return std::make_unique<optim::RMSprop>(
        params,
        defaults ? optim::RMSpropOptions()
                 : optim::RMSpropOptions(0.01).momentum(0.5).centered(true).weight_decay(0.01));
  }
  if (name == "adagrad") {
    return std::make_unique<optim::Adagrad>(
        params,
        defaults ? optim::AdagradOptions() : optim::AdagradOptions(0.1).lr_decay(0.01).initial_accumulator_value(0.1));
  }
  throw std::invalid_argument("unknown optimizer configuration '" + name + "'");
}

void train_step(torch::nn::Sequential& model, optim::Optimizer& optimizer, const at::Tensor& x, const at::Tensor& y) {
  optimizer.zero_grad();
  torch::mse_loss(model->forward(x), y).backward();
  optimizer.step();
}

void train(const std::string& name, int steps, const std::string& dir) {
  torch::manual_seed(0);
  auto model = make_model();
  auto optimizer = make_optimizer(name, model, false);
  c10::List<at::Tensor> xs;
  c10::List<at::Tensor> ys;
  for (int i = 0; i <= steps; ++i) {
    xs.push_back(torch::randn({16, 4}));
    ys.push_back(torch::randn({16, 3}));
  }
  GenericDict initial = new_dict();
  initial.insert("model", torch_ext::get_model_state_dict(*model));
  torch_ext::write_checkpoint_file(dir + "/initial.pt", initial);
  GenericDict batches = new_dict();
  batches.insert("x", xs);
  batches.insert("y", ys);
  torch_ext::write_checkpoint_file(dir + "/batches.pt", batches);

  for (int i = 0; i < steps; ++i) {
    train_step(model, *optimizer, xs[i], ys[i]);
  }
  GenericDict checkpoint = new_dict();
  checkpoint.insert("model", torch_ext::get_model_state_dict(*model));
  checkpoint.insert("optim", torch_ext::get_optimizer_state_dict(*model, *optimizer));
  checkpoint.insert("rng", torch_ext::get_rng_state());
  torch_ext::write_checkpoint_file(dir + "/checkpoint.pt", checkpoint);

  train_step(model, *optimizer, xs[steps], ys[steps]);
  GenericDict after = new_dict();
  after.insert("model", torch_ext::get_model_state_dict(*model));
  after.insert("optim", torch_ext::get_optimizer_state_dict(*model, *optimizer));
  torch_ext::write_checkpoint_file(dir + "/after.pt", after);
}

void resume(
    const std::string& name,
    const std::string& checkpoint_file,
    const std::string& batch_file,
    const std::string& out) {
  auto model = make_model();
  auto optimizer = make_optimizer(name, model, true);
  const auto checkpoint = torch_ext::read_checkpoint_file(checkpoint_file).toGenericDict();
  torch_ext::set_model_state_dict(*model, checkpoint.at("model"));
  torch_ext::set_optimizer_state_dict(*model, *optimizer, checkpoint.at("optim"));
  torch_ext::set_rng_state(checkpoint.at("rng").toTensor());
  GenericDict result = new_dict();
  // Copied: the optimizer's state tensors change in the step below.
  result.insert("loaded_optim", torch_ext::get_optimizer_state_dict(*model, *optimizer).deepcopy());

  const auto batch = torch_ext::read_checkpoint_file(batch_file).toGenericDict();
  train_step(model, *optimizer, batch.at("x").toTensor(), batch.at("y").toTensor());
  result.insert("model", torch_ext::get_model_state_dict(*model));
  result.insert("optim", torch_ext::get_optimizer_state_dict(*model, *optimizer));
  result.insert("rng", torch_ext::get_rng_state());
  torch_ext::write_checkpoint_file(out, result);
}

void rng(int64_t seed, const std::string& out) {
  torch::manual_seed(seed);
  GenericDict result = new_dict();
  result.insert("state", torch_ext::get_rng_state());
  result.insert("draws", torch::randn({100}));
  torch_ext::write_checkpoint_file(out, result);
}

} // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "train" && argc == 5) {
      train(argv[2], std::atoi(argv[3]), argv[4]);
    } else if (mode == "resume" && argc == 6) {
      resume(argv[2], argv[3], argv[4], argv[5]);
    } else if (mode == "rng" && argc == 4) {
      rng(std::atoll(argv[2]), argv[3]);
    } else {
      std::cerr << "usage: state_dict_resume train <optimizer> <steps> <dir>\n"
                   "       state_dict_resume resume <optimizer> <checkpoint.pt> <batch.pt> <out.pt>\n"
                   "       state_dict_resume rng <seed> <out.pt>\n";
      return 2;
    }
  } catch (const c10::Error& e) {
    std::cout << "error: " << e.what_without_backtrace() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cout << "error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
