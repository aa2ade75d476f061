// `make demo`: trains an MLP (with BatchNorm, by Adam) on synthetic data on
// the CPU, saving its whole training state (parameters, buffers, optimizer
// state, RNG, step) through CheckpointManager every --interval steps, and
// shows resume. The run stops at --stop-at; a new process (this program
// with --resume) resumes it from the latest committed step and finishes it;
// its final state is compared bitwise with the same run uninterrupted, which
// is this process going on in memory from --stop-at (the two share the
// steps before it). For each checkpoint it prints how long the training loop
// was blocked, beside a synchronous durable save of the same state dict, and
// the write throughput, beside a plain sequential write of the same bytes to
// the same folder, all measured in this run.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>
#include <torch_ext/checkpoint_file.h>
#include <torch_ext/checkpoint_manager.h>
#include <torch_ext/checkpointer.h>
#include <torch_ext/future_utils.h>
#include <torch_ext/state_dict.h>

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using c10::impl::GenericDict;

struct Flags {
  double mib = 256; // of parameters
  int64_t steps = 30;
  int64_t interval = 10;
  int64_t batch = 8;
  int64_t stop_at = 0; // 0: 5/6 of --steps
  std::string out = "demo_checkpoints";
  bool resume = false;
};

void usage(const char* program) {
  std::cerr << "usage: " << program
            << " [--mib N] [--steps N] [--interval N] [--batch N] [--stop-at N] [--out DIR] [--resume]\n"
               "  --mib       MiB of float32 parameters (default 256)\n"
               "  --steps     training steps (default 30)\n"
               "  --interval  steps between checkpoints (default 10)\n"
               "  --batch     batch size (default 8)\n"
               "  --stop-at   the step the first run stops at (default 5/6 of --steps)\n"
               "  --out       the run's checkpoint folder (default demo_checkpoints)\n"
               "  --resume    only resume the run in --out from its latest committed\n"
               "              step and finish it (what the demo's second process does)\n";
}

Flags parse_flags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--resume") {
      flags.resume = true;
      continue;
    }
    if (i + 1 >= argc) {
      usage(argv[0]);
      std::exit(2);
    }
    const std::string value = argv[++i];
    if (flag == "--mib") {
      flags.mib = std::stod(value);
    } else if (flag == "--steps") {
      flags.steps = std::stoll(value);
    } else if (flag == "--interval") {
      flags.interval = std::stoll(value);
    } else if (flag == "--batch") {
      flags.batch = std::stoll(value);
    } else if (flag == "--stop-at") {
      flags.stop_at = std::stoll(value);
    } else if (flag == "--out") {
      flags.out = value;
    } else {
      usage(argv[0]);
      std::exit(2);
    }
  }
  if (flags.stop_at == 0) {
    flags.stop_at = flags.steps * 5 / 6;
  }
  if (flags.mib <= 0 || flags.steps < 2 || flags.interval < 1 || flags.batch < 2 || flags.stop_at < 1 ||
      flags.stop_at >= flags.steps) {
    std::cerr << "expected --mib > 0, --steps >= 2, --interval >= 1, --batch >= 2 (BatchNorm) and "
                 "1 <= --stop-at < --steps; got --mib "
              << flags.mib << " --steps " << flags.steps << " --interval " << flags.interval << " --batch "
              << flags.batch << " --stop-at " << flags.stop_at << "\n";
    std::exit(2);
  }
  return flags;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

constexpr int64_t kInputs = 256;
constexpr int64_t kOutputs = 16;

// Two hidden layers of width `hidden` hold nearly all the parameters;
// BatchNorm brings buffers. From seed 0, as in every process of the run.
torch::nn::Sequential make_mlp(double mib) {
  torch::manual_seed(0);
  const auto hidden = static_cast<int64_t>(std::sqrt(mib * (1 << 20) / 4));
  return torch::nn::Sequential(
      torch::nn::Linear(kInputs, hidden),
      torch::nn::BatchNorm1d(hidden),
      torch::nn::ReLU(),
      torch::nn::Linear(hidden, hidden),
      torch::nn::ReLU(),
      torch::nn::Linear(hidden, kOutputs));
}

// A training run, built the same in every process: the initial parameters,
// then the teacher (the synthetic data set); the batches are drawn from the
// default generator as the run goes.
struct Training {
  torch::nn::Sequential model;
  torch::optim::Adam optimizer;
  at::Tensor teacher;
  int64_t step = 0;

  explicit Training(double mib)
      : model(make_mlp(mib)),
        optimizer(model->parameters(), torch::optim::AdamOptions(1e-3)),
        teacher(torch::randn({kInputs, kOutputs}) / std::sqrt(double(kInputs))) {}

  // One step; `before_update` runs between the backward pass and the
  // optimizer's update, the first moment the training state changes (the
  // forward pass changes BatchNorm's buffers, which state_dict() copies).
  float train_step(int64_t batch, const std::function<void()>& before_update) {
    const auto x = torch::randn({batch, kInputs});
    const auto loss = torch::mse_loss(model->forward(x), x.mm(teacher));
    optimizer.zero_grad();
    loss.backward();
    before_update();
    optimizer.step();
    ++step;
    return loss.item<float>();
  }

  // What the checkpoint holds. The tensors share memory with the model and
  // the optimizer, except the buffers: the next forward pass updates
  // BatchNorm's running statistics while staging may still be copying, so
  // they (a few KiB) go in as copies.
  GenericDict state_dict() const {
    auto model_state = torch_ext::get_model_state_dict(*model).toGenericDict();
    for (const auto& buffer : model->named_buffers()) {
      model_state.insert_or_assign(buffer.key(), buffer.value().clone());
    }
    GenericDict state(c10::StringType::get(), c10::AnyType::get());
    state.insert("model", model_state);
    state.insert("optim", torch_ext::get_optimizer_state_dict(*model, optimizer));
    state.insert("rng", torch_ext::get_rng_state());
    state.insert("step", step);
    return state;
  }

  void restore(const c10::IValue& loaded) {
    const auto state = loaded.toGenericDict();
    torch_ext::set_model_state_dict(*model, state.at("model"));
    torch_ext::set_optimizer_state_dict(*model, optimizer, state.at("optim"));
    torch_ext::set_rng_state(state.at("rng").toTensor());
    step = state.at("step").toInt();
  }
};

void collect_tensors(const c10::IValue& value, std::vector<at::Tensor>& tensors) {
  if (value.isTensor()) {
    tensors.push_back(value.toTensor());
  } else if (value.isGenericDict()) {
    for (const auto& entry : value.toGenericDict()) {
      collect_tensors(entry.value(), tensors);
    }
  } else if (value.isList()) {
    for (const auto& item : value.toListRef()) {
      collect_tensors(item, tensors);
    }
  } else if (value.isTuple()) {
    for (const auto& item : value.toTupleRef().elements()) {
      collect_tensors(item, tensors);
    }
  }
}

// The reference for throughput: the state dict's tensor bytes, one write()
// per tensor, fsync'd, in the same folder.
double plain_sequential_write(const std::string& file, const c10::IValue& state) {
  std::vector<at::Tensor> tensors;
  collect_tensors(state, tensors);
  const auto start = Clock::now();
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  TORCH_CHECK(fd >= 0, "cannot create '", file, "': ", std::strerror(errno));
  for (const auto& tensor : tensors) {
    const at::Tensor contiguous = tensor.contiguous();
    const char* data = static_cast<const char*>(contiguous.const_data_ptr());
    size_t left = contiguous.nbytes();
    while (left > 0) {
      const ssize_t written = ::write(fd, data, left);
      TORCH_CHECK(written > 0 || errno == EINTR, "write to '", file, "' failed: ", std::strerror(errno));
      if (written > 0) {
        data += written;
        left -= static_cast<size_t>(written);
      }
    }
  }
  TORCH_CHECK(::fsync(fd) == 0 && ::close(fd) == 0, "fsync of '", file, "' failed: ", std::strerror(errno));
  const double elapsed = seconds_since(start);
  fs::remove(file);
  return elapsed;
}

bool bitwise_equal(const c10::IValue& a, const c10::IValue& b) {
  if (a.isTensor() && b.isTensor()) {
    const at::Tensor x = a.toTensor().contiguous();
    const at::Tensor y = b.toTensor().contiguous();
    return x.dtype() == y.dtype() && x.sizes() == y.sizes() &&
        std::memcmp(x.const_data_ptr(), y.const_data_ptr(), x.nbytes()) == 0;
  }
  if (a.isGenericDict() && b.isGenericDict()) {
    const auto x = a.toGenericDict();
    const auto y = b.toGenericDict();
    if (x.size() != y.size()) {
      return false;
    }
    for (auto i = x.begin(), j = y.begin(); i != x.end(); ++i, ++j) {
      if (i->key() != j->key() || !bitwise_equal(i->value(), j->value())) {
        return false;
      }
    }
    return true;
  }
  if ((a.isList() && b.isList()) || (a.isTuple() && b.isTuple())) {
    const auto x = a.isList() ? a.toListRef().vec() : a.toTupleRef().elements().vec();
    const auto y = b.isList() ? b.toListRef().vec() : b.toTupleRef().elements().vec();
    if (x.size() != y.size()) {
      return false;
    }
    for (size_t i = 0; i < x.size(); ++i) {
      if (!bitwise_equal(x[i], y[i])) {
        return false;
      }
    }
    return true;
  }
  return a == b;
}

void draw_progress(int64_t step, int64_t steps, float loss) {
  constexpr int kWidth = 30;
  const auto done = static_cast<int>(step * kWidth / steps);
  std::cout << "\r[" << std::string(done, '#') << std::string(kWidth - done, '.') << "] step " << std::setw(4)
            << step << "/" << steps << "  loss " << std::fixed << std::setprecision(4) << loss << std::flush;
}

std::string list_steps(const std::vector<int64_t>& steps) {
  std::string listed;
  for (const auto step : steps) {
    listed += (listed.empty() ? "" : ", ") + std::to_string(step);
  }
  return listed.empty() ? "none" : listed;
}

struct Measure {
  int64_t step = 0;
  double blocked_s = 0;
  double sync_save_s = 0;
  double plain_write_s = 0;
  uintmax_t bytes = 0;
  double write_s = 0; // from staged to committed
  Clock::time_point staged_at;
  Clock::time_point committed_at;
};

torch_ext::CheckpointManagerOptions manager_options() {
  torch_ext::CheckpointManagerOptions options;
  options.max_to_keep = 2;
  return options;
}

// Trains `run` up to step `until`, saving it through `manager` every
// --interval steps (and at --steps), and measures each save; returns once
// every save is committed.
std::vector<Measure> train_with_checkpoints(
    Training& run, torch_ext::CheckpointManager& manager, const Flags& flags, int64_t until) {
  std::deque<Measure> measures; // the callbacks hold pointers into it
  torch_ext::FuturePtr staged; // of the checkpoint being staged, if any
  const std::string sync_reference = flags.out + "/sync_reference";

  // Staging overlaps the forward and backward passes; the training state
  // changes only from the optimizer's update on. The loop is blocked while
  // save() runs and while it waits here.
  auto wait_for_staging = [&] {
    if (staged) {
      const auto start = Clock::now();
      staged->waitAndThrow();
      measures.back().blocked_s += seconds_since(start);
      staged.reset();
    }
  };
  while (run.step < until) {
    const float loss = run.train_step(flags.batch, wait_for_staging);
    draw_progress(run.step, flags.steps, loss);
    if (run.step % flags.interval != 0 && run.step != flags.steps) {
      continue;
    }
    const GenericDict state = run.state_dict();
    Measure measure;
    measure.step = run.step;
    {
      const auto start = Clock::now();
      torch_ext::write_checkpoint(sync_reference, 0, state);
      measure.sync_save_s = seconds_since(start);
    }
    measure.plain_write_s = plain_sequential_write(flags.out + "/plain_reference.bin", state);
    measures.push_back(measure);
    Measure* current = &measures.back();

    // save() first waits for the previous save: that wait counts as blocked.
    const auto save_started = Clock::now();
    auto [stage_future, commit_future] = manager.save(run.step, state);
    current->blocked_s += seconds_since(save_started);
    staged = stage_future;
    torch_ext::on_complete(stage_future, [current](c10::ivalue::Future&) { current->staged_at = Clock::now(); });
    const std::string file = torch_ext::checkpoint_file_path(manager.step_path(run.step), 0);
    torch_ext::on_complete(commit_future, [current, file](c10::ivalue::Future& future) {
      current->committed_at = Clock::now();
      std::error_code error;
      const auto bytes = fs::file_size(file, error);
      current->bytes = future.hasError() || error ? 0 : bytes;
    });
  }
  // Nothing follows the last save of this run: the wait ends the run, it
  // blocks no training step.
  manager.wait_until_finished();
  fs::remove_all(sync_reference);
  std::vector<Measure> done;
  for (Measure& m : measures) {
    TORCH_CHECK(m.bytes > 0, "the save of step ", m.step, " failed; see above");
    m.write_s = std::chrono::duration<double>(m.committed_at - m.staged_at).count();
    done.push_back(m);
  }
  return done;
}

std::string measures_file(const Flags& flags) {
  return flags.out + "/resumed_measures.txt";
}

// The second process: resumes the run in --out from its latest committed
// step, finishes it, and leaves its measures for the first.
int resume(const Flags& flags) {
  Training run(flags.mib);
  torch_ext::CheckpointManager manager(flags.out, manager_options());
  if (const auto latest = manager.latest_step()) {
    run.restore(manager.load());
    std::cout << "resumed in a new process (pid " << ::getpid() << ") from step " << *latest
              << ", the latest committed one: parameters, buffers, optimizer state, RNG and step loaded\n";
  } else {
    std::cout << "nothing committed to resume from: a new process (pid " << ::getpid()
              << ") starts the run from step 0\n";
  }
  const auto measures = train_with_checkpoints(run, manager, flags, flags.steps);
  std::cout << "\nfinished at step " << run.step << "; committed steps: " << list_steps(manager.all_steps())
            << "\n";
  manager.close();
  std::ofstream out(measures_file(flags));
  out << std::setprecision(17);
  for (const auto& m : measures) {
    out << m.step << ' ' << m.blocked_s << ' ' << m.sync_save_s << ' ' << m.plain_write_s << ' ' << m.bytes << ' '
        << m.write_s << '\n';
  }
  TORCH_CHECK(out.flush(), "cannot write '", measures_file(flags), "'");
  return 0;
}

std::vector<Measure> read_measures(const std::string& file) {
  std::ifstream in(file);
  TORCH_CHECK(in, "the resumed run left no measures in '", file, "'");
  std::vector<Measure> measures;
  Measure m;
  while (in >> m.step >> m.blocked_s >> m.sync_save_s >> m.plain_write_s >> m.bytes >> m.write_s) {
    measures.push_back(m);
  }
  return measures;
}

// Runs this program with --resume and waits for it, at most 10 minutes.
void run_resumed_process(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  args.emplace_back("--resume");
  std::vector<char*> pointers;
  for (auto& arg : args) {
    pointers.push_back(arg.data());
  }
  pointers.push_back(nullptr);
  pid_t pid = 0;
  const int error = ::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, pointers.data(), environ);
  TORCH_CHECK(error == 0, "cannot start the resumed run: ", std::strerror(error));
  const auto deadline = Clock::now() + std::chrono::minutes(10);
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      TORCH_CHECK(false, "the resumed run (pid ", pid, ") took over 10 minutes: killed");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  TORCH_CHECK(
      WIFEXITED(status) && WEXITSTATUS(status) == 0,
      "the resumed run (pid ",
      pid,
      ") failed: expected exit status 0, got ",
      WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                        : "signal " + std::to_string(WTERMSIG(status)));
}

void print_table(
    const std::vector<Measure>& measures, int64_t first_resumed_step, size_t parameter_bytes, double run_s) {
  std::cout << "\n step   blocked   sync save  blocked/sync     MiB   write MiB/s   plain MiB/s  write/plain\n";
  double worst_blocked_ratio = 0;
  double total_write_s = 0;
  double total_plain_s = 0;
  for (const Measure& m : measures) {
    const double mib = m.bytes / double(1 << 20);
    const double write_rate = mib / m.write_s;
    const double plain_rate = mib / m.plain_write_s;
    const double blocked_ratio = m.blocked_s / m.sync_save_s;
    worst_blocked_ratio = std::max(worst_blocked_ratio, blocked_ratio);
    total_write_s += m.write_s;
    total_plain_s += m.plain_write_s;
    std::cout << std::fixed << std::setprecision(3) << std::setw(5) << m.step << std::setw(9) << m.blocked_s << " s"
              << std::setw(9) << m.sync_save_s << " s" << std::setprecision(1) << std::setw(12)
              << 100 * blocked_ratio << " %" << std::setw(8) << mib << std::setw(14) << write_rate << std::setw(14)
              << plain_rate << std::setw(11) << 100 * write_rate / plain_rate << " %"
              << (m.step >= first_resumed_step ? "   (resumed run)" : "") << "\n";
  }
  // Over the run: one write on a disk shared with other work is noisy.
  const double throughput_ratio = total_plain_s / total_write_s;
  const bool size_ok = parameter_bytes >= size_t{256} << 20;
  std::cout << "\ngoal: blocked <= 10% of a synchronous save at every checkpoint"
            << (size_ok ? "" : " (stated for >= 256 MiB)") << ": worst " << std::setprecision(1)
            << 100 * worst_blocked_ratio << " % -> " << (worst_blocked_ratio <= 0.10 ? "met" : "NOT met")
            << "\ngoal: write throughput >= 70% of a plain write, over the run: " << 100 * throughput_ratio
            << " % -> " << (throughput_ratio >= 0.70 ? "met" : "NOT met") << "\nwhole demo: " << run_s << " s\n";
}

} // namespace

int main(int argc, char** argv) {
  const Flags flags = parse_flags(argc, argv);
  try {
    if (flags.resume) {
      return resume(flags);
    }
    const auto demo_start = Clock::now();
    Training run(flags.mib);
    fs::create_directories(flags.out);
    {
      // A new run: the steps of a previous one would be resumed from.
      torch_ext::CheckpointManager previous(flags.out);
      for (const auto step : previous.all_steps()) {
        fs::remove_all(previous.step_path(step));
      }
    }
    size_t parameter_bytes = 0;
    for (const auto& parameter : run.model->parameters()) {
      parameter_bytes += parameter.nbytes();
    }
    std::cout << std::fixed << std::setprecision(1) << "MLP with " << parameter_bytes / double(1 << 20)
              << " MiB of parameters and BatchNorm, trained by Adam for " << flags.steps
              << " steps; its training state is saved every " << flags.interval << " steps into " << flags.out
              << "/step_<n> by CheckpointManager (max_to_keep 2)\n"
              << "this process (pid " << ::getpid() << ") runs from step 0 and stops at step " << flags.stop_at
              << " (--stop-at)\n";

    std::vector<Measure> measures;
    int64_t resumed_from = 0;
    {
      torch_ext::CheckpointManager manager(flags.out, manager_options());
      measures = train_with_checkpoints(run, manager, flags, flags.stop_at);
      resumed_from = manager.latest_step().value_or(0);
      std::cout << "\nstopped at step " << run.step << "; committed steps: " << list_steps(manager.all_steps())
                << std::endl; // before the resumed run's output
    }
    run_resumed_process(argc, argv);
    const auto resumed_measures = read_measures(measures_file(flags));
    fs::remove(measures_file(flags));
    measures.insert(measures.end(), resumed_measures.begin(), resumed_measures.end());

    // The same run uninterrupted: this process goes on in memory from
    // --stop-at, without saving.
    while (run.step < flags.steps) {
      run.train_step(flags.batch, [] {});
    }
    const auto resumed = torch_ext::CheckpointManager(flags.out).load(flags.steps);
    const bool identical = bitwise_equal(resumed, run.state_dict());
    std::cout << "\nthe resumed run's step " << flags.steps << " (resumed from step " << resumed_from
              << ") against the same run uninterrupted (steps 1-" << flags.stop_at << " shared, "
              << flags.stop_at + 1 << "-" << flags.steps << " in memory): parameters, buffers, optimizer state, RNG "
              << (identical ? "bitwise identical" : "DIFFER") << "\n";

    print_table(measures, resumed_from + 1, parameter_bytes, seconds_since(demo_start));
    return identical ? 0 : 1;
  } catch (const c10::Error& e) {
    std::cerr << "\nerror: " << e.what_without_backtrace() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "\nerror: " << e.what() << std::endl;
    return 1;
  }
}
