// What the fuzzers share: their settings (TORCH_EXT_FUZZ_CASES,
// TORCH_EXT_FUZZ_SEED, TORCH_EXT_FUZZ_FAILURES), their seeds and kept cases
// (test/data), and FuzzCases, which runs cases in child processes
// (case_in_child.h: one harness, one set of limits) and keeps the ones that
// fail.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/ivalue.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include "torch_ext/csrc/dcp/zstd_stream.h"

#include "case_in_child.h"
#include "test_files.h"

namespace torch_ext_test {

inline uint64_t env_or(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  return value == nullptr ? fallback : std::stoull(value);
}

inline uint64_t fuzz_seed() {
  return env_or("TORCH_EXT_FUZZ_SEED", 20261130);
}

// Cases per fuzzer: `fallback` unless TORCH_EXT_FUZZ_CASES says (make
// sanitize runs more), in proportion (a fuzzer whose cases cost more runs
// fewer of them).
inline uint64_t fuzz_cases(uint64_t fallback = 2000) {
  return env_or("TORCH_EXT_FUZZ_CASES", 2000) * fallback / 2000;
}

// test/data, set by CMake.
inline std::filesystem::path test_data() {
  return TORCH_EXT_TEST_DATA;
}

// Every tensor within its storage, and every storage byte readable; "" or
// what does not hold.
inline std::string check_tensors(const c10::IValue& value, unsigned& sink) {
  if (value.isTensor()) {
    const at::Tensor& tensor = value.toTensor();
    const c10::Storage& storage = tensor.storage();
    if (tensor.numel() > 0) {
      int64_t last = tensor.storage_offset();
      for (int64_t d = 0; d < tensor.dim(); ++d) {
        last += (tensor.size(d) - 1) * tensor.stride(d);
      }
      if (static_cast<uint64_t>(last) * tensor.element_size() >= storage.nbytes()) {
        return "a loaded tensor reaches past its storage";
      }
    }
    const auto* data = static_cast<const unsigned char*>(storage.data());
    for (size_t i = 0; i < storage.nbytes(); ++i) {
      sink += data[i];
    }
    return "";
  }
  std::vector<c10::IValue> items;
  if (value.isGenericDict()) {
    for (const auto& entry : value.toGenericDict()) {
      items.push_back(entry.value());
    }
  } else if (value.isList()) {
    items = value.toListRef().vec();
  } else if (value.isTuple()) {
    items = value.toTupleRef().elements().vec();
  }
  for (const c10::IValue& item : items) {
    std::string failure = check_tensors(item, sink);
    if (!failure.empty()) {
      return failure;
    }
  }
  return "";
}

// The rule every fuzz case is held to: `read(verify, sink)` (which returns
// "" or what does not hold of what it read, adding the bytes it read to
// `sink`) returns, or throws an error naming `path` that is no internal
// assert, both verified and not. "" or what went wrong.
inline std::string loads_or_fails_naming(
    const std::string& path,
    const std::function<std::string(bool verify, unsigned& sink)>& read) {
  unsigned sink = 0;
  for (const bool verify : {true, false}) {
    try {
      std::string failure = read(verify, sink);
      if (!failure.empty()) {
        return failure;
      }
    } catch (const c10::Error& e) {
      const std::string message = e.what();
      if (message.find(path) == std::string::npos) {
        return "an error that does not name '" + path + "': " + message;
      }
      if (message.find("INTERNAL ASSERT") != std::string::npos) {
        return "an internal assert: " + message;
      }
    }
  }
  static volatile unsigned kept;
  kept = sink; // the reads stay
  return "";
}

// Runs cases in child processes, a batch at a time; a failing case fails the
// test and is kept in TORCH_EXT_FUZZ_FAILURES (by default a folder in the
// temporary folder), to be added to test/data/hostile.
class FuzzCases {
 public:
  // What a case is tested with: "" when the case at `path` loads or fails
  // as it must, else what went wrong.
  using Load = std::function<std::string(const std::string& path)>;
  // Puts a case's bytes at `path` (a file, or a folder that holds them).
  using Write = std::function<void(const std::filesystem::path& path, const std::string& bytes)>;

  explicit FuzzCases(Load load)
      : root_(std::filesystem::temp_directory_path() / ("torch_ext_fuzz." + std::to_string(::getpid()))),
        load_(std::move(load)) {
    std::filesystem::create_directories(root_);
  }
  FuzzCases(const FuzzCases&) = delete;
  FuzzCases& operator=(const FuzzCases&) = delete;
  ~FuzzCases() {
    std::filesystem::remove_all(root_);
  }

  // A case: `bytes` written at root()/name by `write` and loaded, both in a
  // child.
  void add(std::string name, std::string bytes, Write write = write_bytes) {
    pending_.push_back({root_ / name, std::move(bytes), std::move(write)});
    if (pending_.size() == kBatch) {
      flush();
    }
  }

  // Runs the cases added and not yet run; returns how many ran in all.
  uint64_t finish() {
    flush();
    return cases_;
  }

  // Loads each of `paths` in a child, as they are; a case kept compressed
  // (`<name>.zst`, as test/data/hostile keeps those over 1 MiB) is
  // decompressed into root()/<name> first.
  void replay(const std::vector<std::filesystem::path>& paths) {
    const auto failures = run_in_children(paths.size(), [this, &paths](size_t i) {
      const std::filesystem::path& kept = paths[i];
      if (kept.extension() != ".zst") {
        return load_(kept.string());
      }
      const std::filesystem::path path = root_ / kept.stem();
      write_bytes(path, torch_ext::detail::dcp::zstd_decompress(read_bytes(kept), kMaxKeptBytes, kept.string()));
      return load_(path.string());
    }, kBatch);
    for (const CaseFailure& failure : failures) {
      ADD_FAILURE() << paths[failure.index].string() << ": " << failure.why;
    }
  }

  const std::filesystem::path& root() const {
    return root_;
  }

 private:
  static constexpr size_t kBatch = 64;
  static constexpr uint64_t kMaxKeptBytes = uint64_t{64} << 20;

  struct Pending {
    std::filesystem::path path;
    std::string bytes;
    Write write;
  };

  void flush() {
    const auto failures = run_in_children(pending_.size(), [this](size_t i) {
      const Pending& pending = pending_[i];
      pending.write(pending.path, pending.bytes);
      std::string why = load_(pending.path.string());
      std::filesystem::remove_all(pending.path);
      return why;
    }, kBatch);
    for (const CaseFailure& failure : failures) {
      const Pending& pending = pending_[failure.index];
      const char* folder = std::getenv("TORCH_EXT_FUZZ_FAILURES");
      const std::filesystem::path kept_in =
          folder != nullptr ? std::filesystem::path(folder) : std::filesystem::temp_directory_path() / "torch_ext_fuzz_failures";
      std::filesystem::create_directories(kept_in);
      const std::filesystem::path kept = kept_in / pending.path.filename();
      std::filesystem::remove_all(kept);
      pending.write(kept, pending.bytes);
      ADD_FAILURE() << pending.path.filename().string() << " (fuzz seed " << fuzz_seed() << "): " << failure.why
                    << "\nthe case is kept as " << kept.string() << "; add it to test/data/hostile";
    }
    cases_ += pending_.size();
    pending_.clear();
  }

  std::filesystem::path root_;
  Load load_;
  std::vector<Pending> pending_;
  uint64_t cases_ = 0;
};

} // namespace torch_ext_test
