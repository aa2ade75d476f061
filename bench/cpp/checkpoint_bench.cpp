// The checkpoint benchmark's C++ side, run by tools/bench_report.py:
//
//   checkpoint_bench save --layout FILE --out DIR [--idle-s S] [--saves N]
//                         [--max-staging-bytes N]
//     Builds the state dict that FILE lays out (bench/python/bench_state.py
//     writes it), then saves it N times with torch_ext::AsyncCheckpointer
//     while a training loop of small ops (an MLP step in libtorch, as in
//     examples/async_checkpoint_demo.cpp) runs on the calling thread, with
//     the same loop idle before and after; then once more alone (no loop,
//     writer_nice 0), a synchronous write_checkpoint and a plain write +
//     fsync of the same bytes. Prints JSON.
//
//   checkpoint_bench crc --mib N [--repeats R]
//     Throughput of the CRC32 the checkpoint files use (ISA-L, crc32.h) over
//     N MiB, beside memcpy and a plain read of the same buffer. Prints JSON.
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <torch/torch.h>
#include <torch_ext/checkpoint_file.h>
#include <torch_ext/checkpointer.h>

#include "torch_ext/csrc/io/crc32.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using c10::impl::GenericDict;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> values) {
  TORCH_CHECK(!values.empty(), "median of no values");
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

int64_t status_bytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      return std::stoll(line.substr(field.size() + 1)) * 1024;
    }
  }
  TORCH_CHECK(false, "/proc/self/status has no ", field);
}

void reset_peak_rss() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

std::map<std::string, std::string> parse_flags(int argc, char** argv, int first) {
  std::map<std::string, std::string> flags;
  for (int i = first; i < argc; i += 2) {
    const std::string flag = argv[i];
    TORCH_CHECK(flag.rfind("--", 0) == 0 && i + 1 < argc, "expected --flag value pairs, got '", flag, "'");
    flags[flag.substr(2)] = argv[i + 1];
  }
  return flags;
}

std::string flag(const std::map<std::string, std::string>& flags, const std::string& name, const std::string& fallback) {
  const auto found = flags.find(name);
  if (found != flags.end()) {
    return found->second;
  }
  TORCH_CHECK(!fallback.empty(), "missing --", name);
  return fallback;
}

// `path dims...` lines, dict keys joined by '/': nested dicts of float32
// tensors (0-dim without dims).
GenericDict build_state(const std::string& layout) {
  std::ifstream in(layout);
  TORCH_CHECK(in, "cannot read the layout '", layout, "'");
  GenericDict root(c10::StringType::get(), c10::AnyType::get());
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string path;
    if (!(fields >> path)) {
      continue;
    }
    std::vector<int64_t> sizes;
    for (int64_t size = 0; fields >> size;) {
      sizes.push_back(size);
    }
    GenericDict dict = root;
    size_t start = 0;
    for (size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', start)) {
      const std::string key = path.substr(start, slash - start);
      if (!dict.contains(key)) {
        dict.insert(key, GenericDict(c10::StringType::get(), c10::AnyType::get()));
      }
      dict = dict.at(key).toGenericDict();
      start = slash + 1;
    }
    dict.insert(path.substr(start), torch::randn(sizes));
  }
  return root;
}

int64_t tensor_bytes(const c10::IValue& value) {
  if (value.isTensor()) {
    return static_cast<int64_t>(value.toTensor().nbytes());
  }
  int64_t total = 0;
  if (value.isGenericDict()) {
    for (const auto& entry : value.toGenericDict()) {
      total += tensor_bytes(entry.value());
    }
  }
  return total;
}

void write_all(int fd, const char* data, size_t size, const std::string& file) {
  while (size > 0) {
    const ssize_t written = ::write(fd, data, size);
    TORCH_CHECK(written > 0 || errno == EINTR, "write to '", file, "' failed");
    if (written > 0) {
      data += written;
      size -= static_cast<size_t>(written);
    }
  }
}

void plain_write(const c10::IValue& value, int fd, const std::string& file) {
  if (value.isTensor()) {
    const at::Tensor& tensor = value.toTensor();
    write_all(fd, static_cast<const char*>(tensor.const_data_ptr()), tensor.nbytes(), file);
  } else if (value.isGenericDict()) {
    for (const auto& entry : value.toGenericDict()) {
      plain_write(entry.value(), fd, file);
    }
  }
}

// A training step of a small MLP, as examples/async_checkpoint_demo.cpp's
// loop but small: what a loop of small ops feels.
class TrainingLoop {
 public:
  TrainingLoop()
      : model_(torch::nn::Linear(64, 64), torch::nn::ReLU(), torch::nn::Linear(64, 8)),
        optimizer_(model_->parameters(), 1e-3),
        x_(torch::randn({16, 64})),
        y_(torch::randn({16, 8})) {}

  // Wall seconds per step over a few steps.
  double sample() {
    constexpr int kSteps = 4;
    const auto start = Clock::now();
    for (int i = 0; i < kSteps; ++i) {
      const auto loss = torch::mse_loss(model_->forward(x_), y_);
      optimizer_.zero_grad();
      loss.backward();
      optimizer_.step();
    }
    return seconds_since(start) / kSteps;
  }

  struct Window;
  Window idle(double seconds);

 private:
  torch::nn::Sequential model_;
  torch::optim::SGD optimizer_;
  at::Tensor x_;
  at::Tensor y_;
};

std::pair<uint64_t, uint64_t> cpu_jiffies() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  stat >> cpu;
  uint64_t busy = 0;
  uint64_t total = 0;
  uint64_t value = 0;
  for (int field = 0; stat >> value && field < 10; ++field) {
    total += value;
    busy += (field == 3 || field == 4) ? 0 : value; // idle, iowait
  }
  return {busy, total};
}

double thread_cpu_seconds() {
  timespec now{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return now.tv_sec + now.tv_nsec * 1e-9;
}

// A stretch of the loop: its step times, the part of the time it was on a
// CPU (the rest it waited for one), and how busy the machine's CPUs were.
struct TrainingLoop::Window {
  std::vector<double> samples;
  Clock::time_point wall = Clock::now();
  double cpu = thread_cpu_seconds();
  std::pair<uint64_t, uint64_t> jiffies = cpu_jiffies();
  double step_s = 0;
  double on_cpu = 0;
  double machine_busy = 0;

  void close() {
    const double wall_s = seconds_since(wall);
    const auto now = cpu_jiffies();
    step_s = samples.empty() ? 0.0 : median(samples);
    on_cpu = (thread_cpu_seconds() - cpu) / wall_s;
    machine_busy = now.second > jiffies.second
        ? static_cast<double>(now.first - jiffies.first) / static_cast<double>(now.second - jiffies.second)
        : 0.0;
  }
  std::string json() const {
    std::ostringstream out;
    out << "\"loop_step_s\": " << step_s << ", \"loop_samples\": " << samples.size()
        << ", \"loop_on_cpu\": " << on_cpu << ", \"machine_busy\": " << machine_busy;
    return out.str();
  }
};

TrainingLoop::Window TrainingLoop::idle(double seconds) {
  Window window;
  while (seconds_since(window.wall) < seconds) {
    window.samples.push_back(sample());
  }
  window.close();
  return window;
}

int run_save(const std::map<std::string, std::string>& flags) {
  const GenericDict state = build_state(flag(flags, "layout", ""));
  const fs::path out = flag(flags, "out", "");
  const double idle_s = std::stod(flag(flags, "idle-s", "0.5"));
  const int saves = std::stoi(flag(flags, "saves", "2"));
  torch_ext::AsyncCheckpointerOptions options;
  options.max_staging_bytes = std::stoll(flag(flags, "max-staging-bytes", "0"));
  fs::create_directories(out);
  // One intra-op thread, as bench/python/checkpoint_save_bench.py says why.
  at::set_num_threads(1);

  TrainingLoop loop;
  loop.idle(0.05); // warm up
  const TrainingLoop::Window idle = loop.idle(idle_s);
  const int64_t baseline = status_bytes("VmRSS");
  reset_peak_rss();
  std::ostringstream json;
  json << "{\"bytes\": " << tensor_bytes(state) << ", \"saves\": [";
  int64_t between = 0;
  {
    torch_ext::AsyncCheckpointer checkpointer(options);
    for (int i = 0; i < saves; ++i) {
      const std::string folder = (out / ("torch_ext_cpp_" + std::to_string(i))).string();
      TrainingLoop::Window window;
      const auto start = Clock::now();
      auto [staged, written] = checkpointer.save(folder, state);
      const double blocked = seconds_since(start);
      double staged_s = -1;
      while (!written->completed()) {
        window.samples.push_back(loop.sample());
        if (staged_s < 0 && staged->completed()) {
          staged_s = seconds_since(start);
        }
      }
      const double durable_s = seconds_since(start);
      window.close();
      written->waitAndThrow();
      staged->waitAndThrow();
      if (staged_s < 0) {
        staged_s = durable_s;
      }
      const auto bytes = fs::file_size(torch_ext::checkpoint_file_path(folder, 0));
      fs::remove_all(folder);
      if (i == 0) {
        between = status_bytes("VmRSS") - baseline;
      }
      json << (i ? ", " : "") << "{\"blocked_s\": " << blocked << ", \"staged_s\": " << staged_s
           << ", \"durable_s\": " << durable_s << ", \"bytes\": " << bytes << ", " << window.json() << "}";
    }
  }
  const int64_t peak = status_bytes("VmHWM") - baseline;
  // Idle once more: the faster is the reference, as in the Python benchmark.
  const TrainingLoop::Window idle_after = loop.idle(idle_s);
  const TrainingLoop::Window& reference = idle_after.step_s < idle.step_s ? idle_after : idle;

  // The save's own speed against the disk: no loop, and the writer at the
  // priority of the plain write below.
  double alone_s = 0;
  {
    torch_ext::AsyncCheckpointerOptions alone_options = options;
    alone_options.writer_nice = 0;
    torch_ext::AsyncCheckpointer checkpointer(alone_options);
    // A folder each, as every other case: a save over the previous
    // checkpoint also frees the old file's blocks, which a disk mounted with
    // `discard` (this one) discards before the save is durable.
    const std::string first = (out / "torch_ext_cpp_alone_0").string();
    const std::string timed = (out / "torch_ext_cpp_alone_1").string();
    checkpointer.save(first, state).second->waitAndThrow(); // buffers and threads
    const auto start = Clock::now();
    checkpointer.save(timed, state).second->waitAndThrow();
    alone_s = seconds_since(start);
    fs::remove_all(first);
    fs::remove_all(timed);
  }

  const std::string sync_folder = (out / "torch_ext_cpp_sync").string();
  auto start = Clock::now();
  torch_ext::write_checkpoint(sync_folder, 0, state);
  const double sync_s = seconds_since(start);
  fs::remove_all(sync_folder);

  const std::string plain_file = (out / "torch_ext_cpp_plain.bin").string();
  start = Clock::now();
  const int fd = ::open(plain_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  TORCH_CHECK(fd >= 0, "cannot create '", plain_file, "'");
  plain_write(state, fd, plain_file);
  TORCH_CHECK(::fsync(fd) == 0 && ::close(fd) == 0, "fsync of '", plain_file, "' failed");
  const double plain_s = seconds_since(start);
  fs::remove(plain_file);

  json << "], \"loop_idle_step_s\": " << reference.step_s << ", \"loop_idle_on_cpu\": " << reference.on_cpu
       << ", \"machine_idle_busy\": " << reference.machine_busy << ", \"rss_peak_over_baseline\": " << peak
       << ", \"rss_between_saves_over_baseline\": " << between
       << ", \"alone_durable_s\": " << alone_s << ", \"sync_save_s\": " << sync_s
       << ", \"plain_write_s\": " << plain_s << "}";
  std::cout << json.str() << std::endl;
  return 0;
}

int run_crc(const std::map<std::string, std::string>& flags) {
  const size_t bytes = std::stoull(flag(flags, "mib", "256")) << 20;
  const int repeats = std::stoi(flag(flags, "repeats", "5"));
  const at::Tensor source = torch::randint(0, 256, {static_cast<int64_t>(bytes)}, torch::kUInt8);
  const at::Tensor destination = torch::empty_like(source);
  const auto* data = source.const_data_ptr<uint8_t>();
  auto* copy = destination.mutable_data_ptr<uint8_t>();

  std::vector<double> crc, crc_two_threads, copies, reads;
  volatile uint64_t sink = 0;
  for (int r = 0; r < repeats; ++r) {
    auto start = Clock::now();
    sink = sink + torch_ext::detail::crc32(0, data, bytes);
    crc.push_back(seconds_since(start));

    start = Clock::now();
    uint32_t halves[2] = {0, 0};
    std::thread second([&] { halves[1] = torch_ext::detail::crc32(0, data + bytes / 2, bytes - bytes / 2); });
    halves[0] = torch_ext::detail::crc32(0, data, bytes / 2);
    second.join();
    sink = sink + halves[0] + halves[1];
    crc_two_threads.push_back(seconds_since(start));

    start = Clock::now();
    std::memcpy(copy, data, bytes);
    copies.push_back(seconds_since(start));

    start = Clock::now();
    uint64_t sum = 0;
    const auto* words = reinterpret_cast<const uint64_t*>(data);
    for (size_t i = 0; i < bytes / 8; ++i) {
      sum += words[i];
    }
    sink = sink + sum;
    reads.push_back(seconds_since(start));
  }
  const auto rate = [&](const std::vector<double>& seconds) { return bytes / median(seconds) / 1e9; };
  std::cout << "{\"bytes\": " << bytes << ", \"crc32_gbps\": " << rate(crc)
            << ", \"crc32_two_threads_gbps\": " << rate(crc_two_threads) << ", \"memcpy_gbps\": " << rate(copies)
            << ", \"read_gbps\": " << rate(reads) << "}" << std::endl;
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "save") {
    return run_save(parse_flags(argc, argv, 2));
  }
  if (mode == "crc") {
    return run_crc(parse_flags(argc, argv, 2));
  }
  std::cerr << "usage: " << argv[0]
            << " save --layout FILE --out DIR [--idle-s S] [--saves N] [--max-staging-bytes N]\n"
            << "       " << argv[0] << " crc [--mib N] [--repeats R]\n";
  return 2;
}
