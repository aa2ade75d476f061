// Fuzzes the safetensors reader with hostile files: structure-aware
// mutations of valid files (ours, with CRC32s, and a foreign one without):
// the length prefix, numbers in shapes and data_offsets, dtype names,
// duplicated and dropped entries, deep nesting, non-UTF-8 and control bytes,
// flipped bits and truncations. Each case runs in a child process with a
// memory limit and a timeout, so that a crash, a runaway allocation or a hang
// is a failure of that case rather than of the run. Every case must load or
// fail with an error naming the file; never an internal assert.
//
// Cases: TORCH_EXT_SAFETENSORS_FUZZ_CASES (default 1500; a fork each, so not
// the torch.save fuzzer's count), seed: TORCH_EXT_FUZZ_SEED.
#include <torch_ext/safetensors.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

namespace fs = std::filesystem;

constexpr auto kCaseTimeout = std::chrono::seconds(20);
constexpr uint64_t kCaseMemoryBytes = uint64_t{1} << 30; // above what the process maps already

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  return value == nullptr ? fallback : std::stoull(value);
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

uint64_t header_length(const std::string& bytes) {
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) {
    length = (length << 8) | static_cast<unsigned char>(bytes[i]);
  }
  return length;
}

void set_header_length(std::string& bytes, uint64_t length) {
  for (int i = 0; i < 8; ++i, length >>= 8) {
    bytes[i] = static_cast<char>(length & 0xff);
  }
}

// Ours: several dtypes, 0-dim, empty, metadata, CRC32s.
std::string ours(const std::string& path) {
  c10::impl::GenericDict state(c10::StringType::get(), c10::AnyType::get());
  state.insert("model.embed.weight", torch::randn({8, 4}));
  state.insert("model.norm.bias", torch::randn({4}, torch::kBFloat16));
  state.insert("step", torch::tensor(int64_t{7}));
  state.insert("mask", torch::ones({3}, torch::kBool));
  state.insert("empty", torch::empty({0, 2}, torch::kFloat16));
  state.insert("packed", torch::zeros({2, 2}, torch::kUInt8).view(c10::ScalarType::Float4_e2m1fn_x2));
  torch_ext::write_safetensors_file(path, state, {{"format", "pt"}, {"note", "seed"}});
  return read_bytes(path);
}

// A foreign writer's: no metadata, names unsorted, an unknown field.
std::string foreign() {
  const std::string json =
      R"({"b":{"dtype":"I32","shape":[2],"data_offsets":[8,16]},)"
      R"("a":{"dtype":"F64","shape":[1],"data_offsets":[0,8],"x":[1]}})";
  std::string bytes(8, '\0');
  set_header_length(bytes, json.size());
  return bytes + json + std::string(16, '\x01');
}

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  std::string mutate(const std::string& seed) {
    std::string bytes = seed;
    const uint64_t length = std::min<uint64_t>(header_length(bytes), bytes.size() - 8);
    std::string json = bytes.substr(8, length);
    std::string data = bytes.substr(8 + length);
    switch (rng_() % 9) {
      case 0: // the length prefix
        set_header_length(bytes, pick({0, 1, 7, length - 1, length + 1, length + 8, bytes.size(), 100'000'001,
                                       ~uint64_t{0}, rng_()}));
        return bytes;
      case 1: // a number in a shape or data_offsets
        replace_number(json);
        break;
      case 2: // a dtype name
        replace_dtype(json);
        break;
      case 3: { // an entry given twice, or dropped
        const size_t start = json.find("\":{\"dtype\"", 1 + rng_() % std::max<size_t>(1, json.size()));
        const size_t name = start == std::string::npos ? std::string::npos : json.rfind('"', start - 1);
        const size_t end = start == std::string::npos ? std::string::npos : json.find('}', start);
        if (name != std::string::npos && end != std::string::npos) {
          const std::string entry = json.substr(name, end + 1 - name);
          if (rng_() % 2) {
            json.insert(name, entry + ",");
          } else {
            json.erase(name, end + 1 - name);
          }
        }
        break;
      }
      case 4: { // deep nesting
        const size_t last = json.find_last_of('}');
        if (last != std::string::npos) {
          json.insert(last, ",\"z\":" + std::string(1 + rng_() % 100000, '['));
        }
        break;
      }
      case 5: // non-UTF-8, control and quote bytes in the JSON
        for (int edits = 1 + static_cast<int>(rng_() % 3); edits > 0 && !json.empty(); --edits) {
          json[rng_() % json.size()] = pick_char({'\xff', '\xc3', '\x80', '\0', '\n', '"', '\\', '{', ']'});
        }
        break;
      case 6: // flipped bits anywhere
        for (int flips = 1 + static_cast<int>(rng_() % 8); flips > 0; --flips) {
          bytes[rng_() % bytes.size()] ^= static_cast<char>(1 << (rng_() % 8));
        }
        return bytes;
      case 7: // truncated
        bytes.resize(rng_() % bytes.size());
        return bytes;
      default: // data that grows or shrinks under the header
        data.resize(rng_() % 2 ? data.size() + 1 + rng_() % 64 : rng_() % (data.size() + 1), '\x02');
        break;
    }
    std::string result(8, '\0');
    set_header_length(result, json.size());
    return result + json + data;
  }

 private:
  uint64_t pick(std::initializer_list<uint64_t> values) {
    return *(values.begin() + rng_() % values.size());
  }
  char pick_char(std::initializer_list<char> values) {
    return *(values.begin() + rng_() % values.size());
  }

  void replace_number(std::string& json) {
    std::vector<size_t> digits;
    for (size_t i = 0; i < json.size(); ++i) {
      if (std::isdigit(static_cast<unsigned char>(json[i])) && (i == 0 || !std::isdigit(static_cast<unsigned char>(json[i - 1])))) {
        digits.push_back(i);
      }
    }
    if (digits.empty()) {
      return;
    }
    const size_t at = digits[rng_() % digits.size()];
    size_t end = at;
    while (end < json.size() && std::isdigit(static_cast<unsigned char>(json[end]))) {
      ++end;
    }
    static const std::vector<std::string> numbers = {
        "0", "1", "3", "-1", "1.5", "1e3", "4294967296", "9223372036854775807", "9223372036854775808",
        "18446744073709551615", "18446744073709551616", "99999999999999999999999"};
    json.replace(at, end - at, rng_() % 3 ? numbers[rng_() % numbers.size()] : std::to_string(rng_() % 64));
  }

  void replace_dtype(std::string& json) {
    const size_t at = json.find("\"dtype\":\"", rng_() % std::max<size_t>(1, json.size()));
    if (at == std::string::npos) {
      return;
    }
    const size_t start = at + 9;
    const size_t end = json.find('"', start);
    static const std::vector<std::string> dtypes = {
        "F4", "F6_E2M3", "F6_E3M2", "BOOL", "U8", "F8_E8M0", "I16", "BF16", "C64", "F64", "U64", "F128", "", "f32"};
    json.replace(start, end - start, dtypes[rng_() % dtypes.size()]);
  }

  std::mt19937_64 rng_;
};

// In the child: loads the file every way the reader offers. Exit 0: every
// load failed as it must; kLoaded: some loaded; 1: an error broke the rules
// (said on stderr).
constexpr int kLoaded = 4;

[[noreturn]] void load_in_child(const std::string& path) {
  const uint64_t limit = kCaseMemoryBytes + []() -> uint64_t {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("VmSize:", 0) == 0) {
        return std::stoull(line.substr(7)) * 1024;
      }
    }
    return uint64_t{0};
  }();
#if !defined(__SANITIZE_ADDRESS__)
  // ASan's allocator maps its own regions and fails under an address-space limit.
  const rlimit memory{limit, limit};
  ::setrlimit(RLIMIT_AS, &memory);
#else
  (void)limit;
#endif
  int code = 0;
  bool loaded = false;
  for (const bool verify : {true, false}) {
    try {
      const torch_ext::SafetensorsFile file(path);
      double sum = 0;
      for (const auto& entry : file.load({verify, {}})) {
        const at::Tensor tensor = entry.value().toTensor();
        const auto* bytes = static_cast<const unsigned char*>(tensor.const_data_ptr());
        for (size_t i = 0; i < tensor.nbytes(); ++i) {
          sum += bytes[i]; // every byte readable
        }
      }
      file.verify();
      (void)sum;
      loaded = true;
    } catch (const c10::Error& e) {
      const std::string message = e.what();
      if (message.find("'" + path + "'") == std::string::npos || message.find("INTERNAL ASSERT") != std::string::npos) {
        std::cerr << "bad error: " << message << std::endl;
        code = 1;
      }
    }
  }
  std::_Exit(code != 0 ? code : loaded ? kLoaded : 0);
}

// Runs one case in a child; "" if it held, else what went wrong.
std::string run_case(const std::string& path, bool* loaded = nullptr) {
  const pid_t child = ::fork();
  if (child == 0) {
    load_in_child(path);
  }
  if (child < 0) {
    return "fork failed";
  }
  const auto deadline = std::chrono::steady_clock::now() + kCaseTimeout;
  int status = 0;
  while (::waitpid(child, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(child, SIGKILL);
      ::waitpid(child, &status, 0);
      return "timed out";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1)); // polling a deadline, not synchronisation
  }
  if (WIFSIGNALED(status)) {
    return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  }
  if (loaded != nullptr) {
    *loaded = WEXITSTATUS(status) == kLoaded;
  }
  return WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == kLoaded
      ? ""
      : "an error that does not name the file, or an internal assert";
}

TEST(SafetensorsFuzzTest, HostileFilesLoadOrFailNamingTheFileInBoundedMemoryAndTime) {
  const fs::path root = fs::temp_directory_path() / ("torch_ext_safetensors_fuzz." + std::to_string(::getpid()));
  fs::create_directories(root);
  const std::vector<std::string> seeds = {ours((root / "ours.safetensors").string()), foreign()};
  const std::string path = (root / "case.safetensors").string();
  for (const std::string& seed : seeds) {
    write_bytes(path, seed);
    ASSERT_EQ(run_case(path), "");
    EXPECT_NO_THROW(torch_ext::SafetensorsFile{path});
  }
  const uint64_t cases = env_or("TORCH_EXT_SAFETENSORS_FUZZ_CASES", 1500);
  const uint64_t seed = env_or("TORCH_EXT_FUZZ_SEED", 20261201);
  Mutator mutator(seed);
  uint64_t loaded = 0;
  for (uint64_t i = 0; i < cases; ++i) {
    const std::string bytes = mutator.mutate(seeds[i % seeds.size()]);
    write_bytes(path, bytes);
    bool case_loaded = false;
    const std::string failure = run_case(path, &case_loaded);
    loaded += case_loaded ? 1 : 0;
    if (!failure.empty()) {
      write_bytes((root / "failing.safetensors").string(), bytes);
      FAIL() << "case " << i << " of seed " << seed << ": " << failure << " (kept in " << (root / "failing.safetensors")
             << ")";
    }
  }
  std::cout << cases << " cases, " << loaded << " of them loaded" << std::endl;
  fs::remove_all(root);
}

} // namespace
