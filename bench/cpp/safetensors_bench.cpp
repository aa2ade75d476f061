// The safetensors benchmark's C++ side, run by bench/python/safetensors_bench.py:
//
//   safetensors_bench save --layout FILE --file OUT
//     Builds the flat state dict that FILE lays out (bench/python/bench_state.py
//     writes it; its '/'-joined paths become dotted keys), then times one
//     write_safetensors_file to OUT (durable). Prints {"save_s": [s], "bytes": n}.
//
//   safetensors_bench load --file FILE --verify 0|1
//     Times SafetensorsFile(FILE).load() with every value touched (the sum
//     of every tensor, in float64, as the Python side touches them). Prints
//     {"load_s": [s]}.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

#include <torch/torch.h>
#include <torch_ext/safetensors.h>

namespace {

using Clock = std::chrono::steady_clock;

std::map<std::string, std::string> parse_flags(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  for (int i = 2; i + 1 < argc; i += 2) {
    TORCH_CHECK(std::string(argv[i]).rfind("--", 0) == 0, "expected --flag value pairs, got '", argv[i], "'");
    flags[argv[i] + 2] = argv[i + 1];
  }
  return flags;
}

std::string flag(const std::map<std::string, std::string>& flags, const std::string& name) {
  const auto found = flags.find(name);
  TORCH_CHECK(found != flags.end(), "missing --", name);
  return found->second;
}

c10::impl::GenericDict flat_state(const std::string& layout) {
  std::ifstream in(layout);
  TORCH_CHECK(in, "cannot read the layout '", layout, "'");
  c10::impl::GenericDict state(c10::StringType::get(), c10::AnyType::get());
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
    std::replace(path.begin(), path.end(), '/', '.');
    state.insert(path, torch::randn(sizes));
  }
  return state;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int run_save(const std::map<std::string, std::string>& flags) {
  const c10::impl::GenericDict state = flat_state(flag(flags, "layout"));
  const std::string file = flag(flags, "file");
  const auto start = Clock::now();
  torch_ext::write_safetensors_file(file, state);
  const double seconds = seconds_since(start);
  int64_t bytes = 0;
  for (const auto& entry : state) {
    bytes += static_cast<int64_t>(entry.value().toTensor().nbytes());
  }
  std::cout << "{\"save_s\": [" << seconds << "], \"bytes\": " << bytes << "}" << std::endl;
  return 0;
}

int run_load(const std::map<std::string, std::string>& flags) {
  const std::string file = flag(flags, "file");
  const bool verify = flag(flags, "verify") == "1";
  (void)torch::ones({8}).sum(torch::kDouble); // the first op's one-time setup, outside the timing
  const auto start = Clock::now();
  double sum = 0;
  for (const auto& entry : torch_ext::SafetensorsFile(file).load({verify, {}})) {
    sum += entry.value().toTensor().sum(torch::kDouble).item<double>();
  }
  const double seconds = seconds_since(start);
  std::cerr << "sum " << sum << std::endl;
  std::cout << "{\"load_s\": [" << seconds << "]}" << std::endl;
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  at::set_num_threads(1); // as the Python side
  if (mode == "save") {
    return run_save(parse_flags(argc, argv));
  }
  if (mode == "load") {
    return run_load(parse_flags(argc, argv));
  }
  std::cerr << "usage: " << argv[0] << " save --layout FILE --file OUT | load --file FILE --verify 0|1\n";
  return 2;
}
