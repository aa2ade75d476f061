// A C++ training run that checkpoints through CheckpointManager (max_to_keep
// 2) every K steps and resumes from its latest committed step: an MLP with
// dropout trained by libtorch's Adam, its state saved as
// {"model", "optim", "rng", "step"} with <torch_ext/state_dict.h>, the layout
// a Python run saves with DCP's state dicts, so that either resumes the
// other's run. Run by test/test_checkpoint_manager_crash.py, which kills it,
// and test/test_resume_across_languages.py. With `--kill PHASE:SAVE:DELAY_MS`
// it kills itself with SIGKILL at the SAVE-th save of this run:
//   before     before the save starts
//   writing    once a temporary file of the step appears (or its commit)
//   delay      DELAY_MS after save() returned
//   committed  once the step is committed
//   retention  once retention has un-committed an older step, before it is gone
//   stop       never: it stops there and waits to be killed from outside
// At step N it writes {"model", "optim"} to OUT with write_checkpoint_file.
//
//   train_with_checkpoint_manager ROOT OUT [--steps N] [--every K] [--kill PHASE:SAVE:DELAY_MS]
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>
#include <thread>

#include <torch/torch.h>
#include <torch_ext/checkpoint_file.h>
#include <torch_ext/checkpoint_manager.h>
#include <torch_ext/state_dict.h>

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

// The model, libtorch's Adam and the step; the CPU generator holds the rest
// (the batches and dropout's masks are drawn from it).
struct Run {
  torch::nn::Sequential model{
      torch::nn::Linear(64, 128), torch::nn::ReLU(), torch::nn::Dropout(0.1), torch::nn::Linear(128, 4)};
  torch::optim::Adam optimizer{model->parameters(), torch::optim::AdamOptions(1e-3)};
  int64_t step = 0;

  GenericDict state_dict() const {
    GenericDict state = make_dict();
    state.insert("model", torch_ext::get_model_state_dict(*model));
    state.insert("optim", torch_ext::get_optimizer_state_dict(*model, optimizer));
    state.insert("rng", torch_ext::get_rng_state());
    state.insert("step", step);
    return state;
  }

  void restore(const c10::IValue& loaded) {
    const GenericDict state = loaded.toGenericDict();
    torch_ext::set_model_state_dict(*model, state.at("model"));
    torch_ext::set_optimizer_state_dict(*model, optimizer, state.at("optim"));
    torch_ext::set_rng_state(state.at("rng").toTensor());
    step = state.at("step").toInt();
  }

  void train_step() {
    const at::Tensor x = torch::randn({32, 64});
    const at::Tensor y = torch::randn({32, 4});
    optimizer.zero_grad();
    torch::mse_loss(model->forward(x), y).backward();
    optimizer.step();
    ++step;
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
    torch::manual_seed(0); // the initial parameters, when there is nothing to resume
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
    GenericDict result = make_dict();
    result.insert("model", torch_ext::get_model_state_dict(*run.model));
    result.insert("optim", torch_ext::get_optimizer_state_dict(*run.model, run.optimizer));
    torch_ext::write_checkpoint_file(out, result);
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
