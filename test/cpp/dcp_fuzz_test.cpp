// Fuzzes read_dcp_checkpoint's unpickler of `.metadata` as the loader's
// fuzzer does torch.save's pickle (issue 15: the same hardening for every
// unpickler): pickle mutations at the level of opcodes (pickle_mutator.h) of
// real `.metadata` files, upstream's (dcp.save of models and optimizer
// states: test/data/fuzz_seeds/*.dcp, made by make_fuzz_seeds.py) and ours,
// each case a folder with the seed's data files, read in a child process
// (case_in_child.h). Every case must load (every tensor inside its storage,
// every byte read) or fail with an error naming the folder; never crash,
// hang, allocate without bound or trip an internal assert. Then the replay
// of every case that ever failed (test/data/hostile/dcp-*).
//
// Cases, seed and where a failing case is kept: fuzz_cases.h.
#include <torch_ext/dcp.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fuzz_cases.h"
#include "pickle_mutator.h"
#include "test_values.h"

namespace {

using torch_ext_test::string_dict;

namespace fs = std::filesystem;
using c10::impl::GenericDict;
using torch_ext_test::read_bytes;
using torch_ext_test::write_bytes;

// Nested dicts and lists, tensors of several dtypes (0-dim and empty ones
// too) and non-tensor values.
GenericDict sample() {
  GenericDict model = string_dict();
  model.insert("embed.weight", torch::randn({4, 3}));
  model.insert("norm.bias", torch::randn({3}, torch::kBFloat16));
  model.insert("empty", torch::empty({0, 2}, torch::kFloat16));
  c10::impl::GenericList buffers(c10::AnyType::get());
  buffers.push_back(torch::arange(5, torch::kInt64));
  buffers.push_back(torch::ones({2}, torch::kBool));
  GenericDict state = string_dict();
  state.insert("model", model);
  state.insert("buffers", buffers);
  state.insert("step", torch::tensor(int64_t{7}));
  state.insert("epoch", int64_t{3});
  state.insert("name", std::string("run"));
  return state;
}

// Reads the folder `path` verified and not: "" when each read succeeds
// (with its tensors inside their storages) or fails with an error naming the
// folder.
std::string load_or_fail_cleanly(const std::string& path) {
  return torch_ext_test::loads_or_fails_naming(path, [&path](bool verify, unsigned& sink) {
    return torch_ext_test::check_tensors(torch_ext::read_dcp_checkpoint(path, {verify, {}}), sink);
  });
}

// A seed: a DCP folder, its `.metadata` and its data files.
struct Seed {
  std::string name;
  fs::path folder;
  std::string metadata;
};

std::vector<Seed> seeds(const fs::path& scratch) {
  std::vector<Seed> result;
  for (const auto& entry : fs::directory_iterator(torch_ext_test::test_data() / "fuzz_seeds")) {
    if (entry.path().extension() == ".dcp") {
      result.push_back({entry.path().stem().string(), entry.path(), ""});
    }
  }
  const fs::path ours = scratch / "ours.dcp";
  torch_ext::write_dcp_checkpoint(ours.string(), sample());
  result.push_back({"ours", ours, ""});
  for (Seed& seed : result) {
    seed.metadata = read_bytes(seed.folder / torch_ext::dcp::kMetadataFileName);
  }
  std::sort(result.begin(), result.end(), [](const Seed& a, const Seed& b) { return a.name < b.name; });
  return result;
}

// Writes a case: the folder `path` with `metadata` as its `.metadata` and
// the data files of `seed`.
torch_ext_test::FuzzCases::Write case_of(const fs::path& seed) {
  return [seed](const fs::path& path, const std::string& metadata) {
    fs::create_directories(path);
    for (const auto& entry : fs::directory_iterator(seed)) {
      if (entry.path().filename().string() != torch_ext::dcp::kMetadataFileName) {
        fs::copy_file(entry.path(), path / entry.path().filename(), fs::copy_options::overwrite_existing);
      }
    }
    write_bytes(path / torch_ext::dcp::kMetadataFileName, metadata);
  };
}

TEST(DcpFuzzTest, SeedsLoad) {
  torch_ext_test::FuzzCases runner(load_or_fail_cleanly);
  const std::vector<Seed> all = seeds(runner.root());
  ASSERT_GE(all.size(), 3u);
  for (const Seed& seed : all) {
    EXPECT_NO_THROW(torch_ext::read_dcp_checkpoint(seed.folder.string())) << seed.name;
  }
}

TEST(DcpFuzzTest, MetadataPickleMutationsLoadOrFailNamingTheFolder) {
  torch_ext_test::FuzzCases runner(load_or_fail_cleanly);
  const std::vector<Seed> all = seeds(runner.root());
  std::mt19937_64 rng(torch_ext_test::fuzz_seed() + 4);
  torch_ext_test::PickleMutator mutator(rng);
  for (uint64_t i = 0, cases = torch_ext_test::fuzz_cases(); i < cases; ++i) {
    const Seed& seed = all[i % all.size()];
    runner.add("dcp-" + seed.name + "-" + std::to_string(i), mutator.mutate(seed.metadata), case_of(seed.folder));
  }
  std::cout << runner.finish() << " .metadata mutations" << std::endl;
}

TEST(DcpFuzzTest, EveryCaseThatEverFailedLoadsOrFailsNamingTheFolder) {
  std::vector<fs::path> kept;
  for (const auto& entry : fs::directory_iterator(torch_ext_test::test_data() / "hostile")) {
    if (entry.is_directory() && entry.path().filename().string().rfind("dcp-", 0) == 0) {
      kept.push_back(entry.path());
    }
  }
  std::sort(kept.begin(), kept.end());
  ASSERT_FALSE(kept.empty());
  torch_ext_test::FuzzCases(load_or_fail_cleanly).replay(kept);
}

} // namespace
