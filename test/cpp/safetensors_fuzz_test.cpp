// Fuzzes the safetensors reader with hostile files: structure-aware
// mutations of valid files (ours, with CRC32s, and a foreign one without):
// the length prefix, numbers in shapes and data_offsets, dtype names,
// duplicated and dropped entries, deep nesting, non-UTF-8 and control bytes,
// flipped bits and truncations. Each case runs in a child process with a
// memory limit and a timeout (case_in_child.h), so that a crash, a runaway
// allocation or a hang is a failure of that case rather than of the run.
// Every case must load or fail with an error naming the file; never an
// internal assert.
//
// Cases, seed and where a failing case is kept: fuzz_cases.h (1500 cases
// by default).
#include <torch_ext/safetensors.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fuzz_cases.h"

namespace {

using torch_ext_test::read_bytes;
using torch_ext_test::write_bytes;

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

// Loads the file every way the reader offers: "" when each load succeeds
// (every byte of its tensors readable) or fails with an error naming the
// file, else what went wrong.
std::string load_file_or_fail_cleanly(const std::string& path) {
  return torch_ext_test::loads_or_fails_naming(path, [&path](bool verify, unsigned& sink) {
    const torch_ext::SafetensorsFile file(path);
    for (const auto& entry : file.load({verify, {}})) {
      const at::Tensor tensor = entry.value().toTensor();
      const auto* bytes = static_cast<const unsigned char*>(tensor.const_data_ptr());
      for (size_t i = 0; i < tensor.nbytes(); ++i) {
        sink += bytes[i];
      }
    }
    file.verify();
    return std::string();
  });
}

TEST(SafetensorsFuzzTest, HostileFilesLoadOrFailNamingTheFileInBoundedMemoryAndTime) {
  torch_ext_test::FuzzCases runner(load_file_or_fail_cleanly);
  const std::string ours_path = (runner.root() / "ours.safetensors").string();
  const std::vector<std::string> seeds = {ours(ours_path), foreign()};
  for (const std::string& seed : seeds) {
    write_bytes(ours_path, seed);
    ASSERT_EQ(load_file_or_fail_cleanly(ours_path), "");
    EXPECT_NO_THROW(torch_ext::SafetensorsFile{ours_path});
  }
  const uint64_t seed = torch_ext_test::fuzz_seed() + 3;
  Mutator mutator(seed);
  for (uint64_t i = 0, cases = torch_ext_test::fuzz_cases(1500); i < cases; ++i) {
    runner.add("safetensors-" + std::to_string(i) + ".safetensors", mutator.mutate(seeds[i % seeds.size()]));
  }
  std::cout << runner.finish() << " cases" << std::endl;
}

} // namespace
