// A C++ training run that checkpoints through CheckpointManager and resumes
// from its latest committed step: an MLP with dropout, trained by a
// hand-written Adam whose moments live in the checkpointed dict, with the
// CPU generator's state and the step. Run by test/test_checkpoint_manager_crash.py,
// which kills it; with `--kill PHASE:SAVE:DELAY_MS` it kills itself with
// SIGKILL at the SAVE-th save of this run:
//   before     before the save starts
//   writing    once a temporary file of the step appears (or its commit)
//   delay      DELAY_MS after save() returned
//   committed  once the step is committed
//   retention  once retention has un-committed an older step, before it is gone
//   stop       never: it stops there and waits to be killed from outside
// At the end it writes the parameters to OUT with write_checkpoint_file.
//
//   train_with_checkpoint_manager ROOT OUT [--steps N] [--every K] [--kill PHASE:SAVE:DELAY_MS]
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <torch_ext/checkpoint_file.h>
#include <torch_ext/checkpoint_manager.h>

namespace {

namespace fs = std::filesystem;
using c10::impl::GenericDict;

GenericDict make_dict() {
  return GenericDict(c10::StringType::get(), c10::AnyType::get());
}

[[noreturn]] void die() {
  ::kill(::getpid(), SIGKILL);
  std::abort();
}

bool has_temporary(const std::string& folder) {
  std::error_code error;
  for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (name.size() > 4 && name[0] == '.' && name.compare(name.size() - 4, 4, ".tmp") == 0) {
      return true;
    }
  }
  return false;
}

bool has_uncommitted_step(const std::string& root) {
  std::error_code error;
  for (fs::directory_iterator it(root, error), end; !error && it != end; it.increment(error)) {
    if (it->path().filename().string().rfind("step_", 0) == 0 &&
        !fs::exists(it->path() / "commit_success.txt", error)) {
      return true;
    }
  }
  return false;
}

void kill_when(std::function<bool()> condition) {
  std::thread([condition = std::move(condition)] {
    while (!condition()) {
    }
    die();
  }).detach();
}

struct Plan {
  std::string phase;
  int64_t save = 0;
  int64_t delay_ms = 0;
};

struct Run {
  GenericDict params = make_dict();
  GenericDict exp_avg = make_dict();
  GenericDict exp_avg_sq = make_dict();
  int64_t step = 0;

  Run() {
    torch::manual_seed(0);
    add("w1", torch::randn({128, 64}) * 0.1);
    add("b1", torch::zeros({128}));
    add("w2", torch::randn({4, 128}) * 0.1);
    add("b2", torch::zeros({4}));
  }

  void add(const std::string& name, const at::Tensor& value) {
    params.insert(name, value.clone().requires_grad_());
    exp_avg.insert(name, torch::zeros_like(value));
    exp_avg_sq.insert(name, torch::zeros_like(value));
  }
  at::Tensor param(const std::string& name) const {
    return params.at(name).toTensor();
  }

  GenericDict state_dict() const {
    GenericDict adam = make_dict();
    adam.insert("exp_avg", exp_avg);
    adam.insert("exp_avg_sq", exp_avg_sq);
    GenericDict state = make_dict();
    state.insert("params", params);
    state.insert("adam", adam);
    state.insert("rng", at::detail::getDefaultCPUGenerator().get_state());
    state.insert("step", step);
    return state;
  }

  void restore(const c10::IValue& loaded) {
    const GenericDict state = loaded.toGenericDict();
    torch::NoGradGuard no_grad;
    auto copy_into = [](const GenericDict& to, const c10::IValue& from) {
      for (const auto& entry : from.toGenericDict()) {
        to.at(entry.key()).toTensor().copy_(entry.value().toTensor());
      }
    };
    copy_into(params, state.at("params"));
    const GenericDict adam = state.at("adam").toGenericDict();
    copy_into(exp_avg, adam.at("exp_avg"));
    copy_into(exp_avg_sq, adam.at("exp_avg_sq"));
    at::Generator generator = at::detail::getDefaultCPUGenerator(); // a handle on the default one
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state.at("rng").toTensor());
    step = state.at("step").toInt();
  }

  void train_step() {
    const at::Tensor x = torch::randn({32, 64});
    const at::Tensor y = torch::randn({32, 4});
    at::Tensor hidden = torch::relu(torch::linear(x, param("w1"), param("b1")));
    hidden = torch::dropout(hidden, 0.1, /*train=*/true);
    const at::Tensor loss = torch::mse_loss(torch::linear(hidden, param("w2"), param("b2")), y);
    loss.backward();
    ++step;
    torch::NoGradGuard no_grad;
    const double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    const double correction1 = 1 - std::pow(beta1, step), correction2 = 1 - std::pow(beta2, step);
    for (const auto& entry : params) {
      at::Tensor p = entry.value().toTensor();
      const at::Tensor g = p.grad();
      at::Tensor m = exp_avg.at(entry.key()).toTensor();
      at::Tensor v = exp_avg_sq.at(entry.key()).toTensor();
      m.mul_(beta1).add_(g, 1 - beta1);
      v.mul_(beta2).addcmul_(g, g, 1 - beta2);
      p.addcdiv_(m / correction1, (v / correction2).sqrt_().add_(eps), -lr);
      p.mutable_grad().reset();
    }
  }
};

} // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: train_with_checkpoint_manager ROOT OUT [--steps N] [--every K] "
                 "[--kill PHASE:SAVE:DELAY_MS]\n";
    return 2;
  }
  const std::string root = argv[1];
  const std::string out = argv[2];
  int64_t steps = 240;
  int64_t every = 4;
  Plan plan;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--steps") {
      steps = std::stoll(value);
    } else if (flag == "--every") {
      every = std::stoll(value);
    } else if (flag == "--kill") {
      const size_t first = value.find(':');
      const size_t second = value.find(':', first + 1);
      plan.phase = value.substr(0, first);
      plan.save = std::stoll(value.substr(first + 1, second - first - 1));
      plan.delay_ms = std::stoll(value.substr(second + 1));
    } else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  try {
    at::set_num_threads(1);
    Run run;
    torch_ext::CheckpointManagerOptions options;
    options.max_to_keep = 2;
    torch_ext::CheckpointManager manager(root, options);
    if (manager.latest_step()) {
      run.restore(manager.load());
    }
    int64_t saves = 0;
    while (run.step < steps) {
      run.train_step();
      if (run.step % every != 0) {
        continue;
      }
      ++saves;
      const std::string phase = saves == plan.save ? plan.phase : "";
      if (phase == "before") {
        die();
      }
      if (phase == "writing") {
        const std::string folder = manager.step_path(run.step);
        kill_when([folder] { return has_temporary(folder) || fs::exists(folder + "/commit_success.txt"); });
      }
      auto [staged, committed] = manager.save(run.step, run.state_dict());
      if (phase == "delay") {
        std::this_thread::sleep_for(std::chrono::milliseconds(plan.delay_ms));
        die();
      }
      staged->waitAndThrow();
      if (phase == "committed") {
        committed->waitAndThrow();
        die();
      }
      if (phase == "retention") {
        kill_when([root] { return has_uncommitted_step(root); });
        manager.wait_until_finished();
        die();
      }
      if (phase == "stop") {
        committed->waitAndThrow();
        std::this_thread::sleep_for(std::chrono::minutes(10));
        return 3;
      }
    }
    manager.close();
    GenericDict params = make_dict();
    for (const auto& entry : run.params) {
      params.insert(entry.key(), entry.value().toTensor().detach());
    }
    torch_ext::write_checkpoint_file(out, params);
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
