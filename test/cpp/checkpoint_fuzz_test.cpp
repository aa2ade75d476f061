// Fuzzes read_checkpoint_file: damaged copies of a valid checkpoint (flipped
// bits, truncations, random and mutated pickles) and garbage must each load
// or fail with an error naming the file; never crash (make sanitize runs this
// under ASan with more cases), never an internal assert. A loaded tensor must
// lie inside its storage, whose bytes are all read.
//
// Cases: TORCH_EXT_FUZZ_CASES (default 3000), seed: TORCH_EXT_FUZZ_SEED.
#include <torch_ext/checkpoint_file.h>
#include <torch_ext/checkpoint_values.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

namespace fs = std::filesystem;
using c10::impl::GenericDict;
using c10::impl::GenericList;

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

uint64_t le(const std::string& bytes, size_t at, int size) {
  uint64_t value = 0;
  for (int i = size - 1; i >= 0; --i) {
    value = (value << 8) | static_cast<unsigned char>(bytes[at + static_cast<size_t>(i)]);
  }
  return value;
}

// A checkpoint with every kind of container, shared storages and views.
GenericDict sample() {
  const at::Tensor shared = torch::arange(48, torch::kFloat32).reshape({6, 8});
  GenericDict attributes(c10::StringType::get(), c10::AnyType::get());
  attributes.insert("_metadata", GenericDict(c10::StringType::get(), c10::AnyType::get()));
  GenericDict model(c10::StringType::get(), c10::AnyType::get());
  model.insert("a", shared);
  model.insert("b", shared.t());
  model.insert("c", shared.select(0, 3));
  model.insert("steps", torch::arange(5, torch::kInt64));
  torch_ext::mark_ordered_dict(model, attributes);
  GenericList list(c10::AnyType::get());
  list.push_back(torch::ones({3}, torch::kBFloat16));
  list.push_back(torch_ext::make_size({2, 3}));
  list.push_back(c10::ivalue::Tuple::create({int64_t{1} << 40, 2.5, std::string("x"), c10::IValue()}));
  list.push_back(torch::zeros({2, 2}, torch::kUInt16));
  GenericDict state(c10::AnyType::get(), c10::AnyType::get());
  state.insert("model", model);
  state.insert(int64_t{7}, list);
  state.insert(true, torch::tensor(1.5));
  return state;
}

// Where the data of record `data.pkl`, the first record of our files, lies:
// its local header starts the file, its central directory entry comes first.
std::pair<size_t, size_t> pickle_span(const std::string& bytes) {
  const size_t offset = 30 + le(bytes, 26, 2) + le(bytes, 28, 2);
  const size_t directory = le(bytes, bytes.size() - 22 + 16, 4);
  return {offset, le(bytes, directory + 20, 4)};
}

// Pickle opcodes and arguments that reach every path of the unpickler.
std::string random_pickle(std::mt19937_64& rng, size_t size) {
  static const std::vector<std::string> pieces = {
      "\x80\x02", "(", ".", "0", "1", "2", "N", "\x88", "\x89", "K\x05", "M\x01\x02", "J\xff\xff\xff\xff",
      std::string("\x8a\x09", 2) + "123456789", "\x8a\x02\x01\x80", "G@\x04\x00\x00\x00\x00\x00\x00",
      std::string("X\x03\x00\x00\x00", 5) + "abc", std::string("X\xff\xff\xff\x7f", 5), "]", "}", ")", "t",
      "\x85", "\x86", "\x87", "l", "d", "a", "e", "s", "u", "b", "R", "Q", std::string("q\x00", 2), "q\x01",
      std::string("h\x00", 2), "h\x01", "j\x01\x00\x00\x00", "ccollections\nOrderedDict\n", "ctorch\nSize\n",
      "ctorch._utils\n_rebuild_tensor_v2\n", "ctorch._utils\n_rebuild_tensor_v3\n",
      "ctorch._utils\n_rebuild_parameter\n", "ctorch\nFloatStorage\n", "ctorch.storage\nUntypedStorage\n",
      "ctorch\nfloat32\n", "cos\nsystem\n", std::string("X\x07\x00\x00\x00", 5) + "storage",
      std::string("X\x01\x00\x00\x00", 5) + "0", std::string("X\x03\x00\x00\x00", 5) + "cpu", "\x94", "\x93",
      "\xff"};
  std::string pickle;
  while (pickle.size() < size) {
    pickle += pieces[rng() % pieces.size()];
  }
  pickle.resize(size);
  return pickle;
}

class Fuzzer {
 public:
  explicit Fuzzer(std::string path) : path_(std::move(path)) {}

  // Loads `bytes` both ways; returns how many loads succeeded.
  int load(const std::string& bytes) {
    write_bytes(path_, bytes);
    int loaded = 0;
    for (const bool verify : {true, false}) {
      try {
        check_tensors(torch_ext::read_checkpoint_file(path_, {verify, {}}));
        ++loaded;
      } catch (const c10::Error& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find("'" + path_ + "'"), std::string::npos) << message;
        EXPECT_EQ(message.find("INTERNAL ASSERT"), std::string::npos) << message;
      }
    }
    return loaded;
  }

 private:
  // Every tensor within its storage, and every storage byte readable.
  void check_tensors(const c10::IValue& value) {
    if (value.isTensor()) {
      const at::Tensor& tensor = value.toTensor();
      const c10::Storage& storage = tensor.storage();
      if (tensor.numel() > 0) {
        int64_t last = tensor.storage_offset();
        for (int64_t d = 0; d < tensor.dim(); ++d) {
          last += (tensor.size(d) - 1) * tensor.stride(d);
        }
        EXPECT_LT(static_cast<uint64_t>(last) * tensor.element_size(), storage.nbytes());
      }
      const auto* data = static_cast<const unsigned char*>(storage.data());
      unsigned sum = 0;
      for (size_t i = 0; i < storage.nbytes(); ++i) {
        sum += data[i];
      }
      sink_ += sum;
    } else if (value.isGenericDict()) {
      for (const auto& entry : value.toGenericDict()) {
        check_tensors(entry.value());
      }
    } else if (value.isList()) {
      for (const auto& item : value.toListRef()) {
        check_tensors(item);
      }
    } else if (value.isTuple()) {
      for (const auto& item : value.toTupleRef().elements()) {
        check_tensors(item);
      }
    }
  }

  std::string path_;
  unsigned sink_ = 0;
};

TEST(CheckpointFuzzTest, DamagedAndGarbageFilesLoadOrFailNamingTheFile) {
  const fs::path root = fs::temp_directory_path() / ("torch_ext_fuzz." + std::to_string(::getpid()));
  fs::create_directories(root);
  const std::string valid_path = (root / "valid.pt").string();
  torch_ext::write_checkpoint_file(valid_path, sample());
  const std::string valid = read_bytes(valid_path);
  const auto [pickle_offset, pickle_size] = pickle_span(valid);
  ASSERT_EQ(valid.substr(pickle_offset, 2), "\x80\x02");

  const uint64_t cases = env_or("TORCH_EXT_FUZZ_CASES", 3000);
  std::mt19937_64 rng(env_or("TORCH_EXT_FUZZ_SEED", 20261130));
  Fuzzer fuzzer((root / "case.pt").string());
  ASSERT_EQ(fuzzer.load(valid), 2);
  uint64_t loaded = 0;
  for (uint64_t i = 0; i < cases; ++i) {
    std::string bytes = valid;
    switch (i % 5) {
      case 0: // flipped bits anywhere
        for (int flips = 1 + static_cast<int>(rng() % 8); flips > 0; --flips) {
          bytes[rng() % bytes.size()] ^= static_cast<char>(1 << (rng() % 8));
        }
        break;
      case 1: // truncated
        bytes.resize(rng() % bytes.size());
        break;
      case 2: // a random pickle (read unverified: the CRC no longer matches)
        bytes.replace(pickle_offset, pickle_size, random_pickle(rng, pickle_size));
        break;
      case 3: // the valid pickle, mutated
        for (int edits = 1 + static_cast<int>(rng() % 4); edits > 0; --edits) {
          bytes[pickle_offset + rng() % pickle_size] = static_cast<char>(rng());
        }
        break;
      case 4: { // garbage, sometimes ending like a zip
        bytes.assign(rng() % 4096, '\0');
        for (char& byte : bytes) {
          byte = static_cast<char>(rng());
        }
        if (rng() % 2 == 0) {
          bytes += valid.substr(valid.size() - 98);
        }
        break;
      }
    }
    loaded += static_cast<uint64_t>(fuzzer.load(bytes));
    if (HasFailure()) {
      FAIL() << "case " << i << " of seed " << env_or("TORCH_EXT_FUZZ_SEED", 20261130);
    }
  }
  std::cout << cases << " cases, " << loaded << " loads succeeded of " << 2 * cases << std::endl;
  fs::remove_all(root);
}

} // namespace
