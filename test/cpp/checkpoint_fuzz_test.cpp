// Fuzzes read_checkpoint_file. Every case is a file that must load, or fail
// with an error naming the file; never crash, hang, allocate without bound
// (each case runs in a child process: case_in_child.h) or trip an internal
// assert. A loaded tensor must lie inside its storage, whose bytes are all
// read. Three fuzzers:
// - random damage to a valid checkpoint (flipped bits, truncations, random
//   and mutated pickles) and garbage;
// - pickle mutations at the level of opcodes (pickle_mutator.h) and
// - zip mutations at the level of fields, names and records (zip_builder.h),
//   both seeded from real torch.save files of models and optimizer states
//   (test/data/fuzz_seeds, made by make_fuzz_seeds.py) and from ours;
// and the replay of every case that ever failed (test/data/hostile).
//
// Cases per fuzzer: TORCH_EXT_FUZZ_CASES (default 2000; make sanitize runs
// more), seed: TORCH_EXT_FUZZ_SEED. A failing case is written to
// TORCH_EXT_FUZZ_FAILURES (default: a folder in the temporary folder), to be
// kept in test/data/hostile.
#include <torch_ext/checkpoint_file.h>
#include <torch_ext/checkpoint_values.h>

#include <unistd.h>

#include <algorithm>
#include <memory>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "case_in_child.h"
#include "fuzz_cases.h"
#include "pickle_mutator.h"
#include "zip_builder.h"

namespace {

namespace fs = std::filesystem;
using c10::impl::GenericDict;
using c10::impl::GenericList;
using torch_ext_test::ZipField;
using torch_ext_test::ZipRecord;

using torch_ext_test::fuzz_cases;
using torch_ext_test::fuzz_seed;
using torch_ext_test::read_bytes;
using torch_ext_test::test_data;
using torch_ext_test::write_bytes;

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

// Loads `path` verified and not: "" when each load succeeds (with its
// tensors inside their storages) or fails with an error naming the file.
std::string load_or_fail_cleanly(const std::string& path) {
  return torch_ext_test::loads_or_fails_naming(path, [&path](bool verify, unsigned& sink) {
    return torch_ext_test::check_tensors(torch_ext::read_checkpoint_file(path, {verify, {}}), sink);
  });
}

// A seed: the records of a real checkpoint.
struct Seed {
  std::string name;
  std::vector<ZipRecord> records;
};

std::vector<Seed> seeds(const fs::path& scratch) {
  std::vector<Seed> result;
  for (const auto& entry : fs::directory_iterator(test_data() / "fuzz_seeds")) {
    if (entry.path().extension() != ".pt") {
      continue; // another format's seed
    }
    result.push_back({entry.path().stem().string(), torch_ext_test::read_zip_records(read_bytes(entry.path()))});
  }
  const fs::path ours = scratch / "ours.pt";
  torch_ext::write_checkpoint_file(ours.string(), sample());
  result.push_back({"ours", torch_ext_test::read_zip_records(read_bytes(ours))});
  fs::remove(ours);
  std::sort(result.begin(), result.end(), [](const Seed& a, const Seed& b) { return a.name < b.name; });
  return result;
}

ZipRecord& pickle_record(std::vector<ZipRecord>& records) {
  return *std::find_if(records.begin(), records.end(), [](const ZipRecord& record) {
    return record.name.size() >= 9 && record.name.compare(record.name.size() - 9, 9, "/data.pkl") == 0;
  });
}

// The harness the fuzzers rely on tells each way a case can go wrong, and
// which case it was.
TEST(CaseInChildTest, ACrashAHangAndARunawayAllocationFailTheirCaseNotTheRun) {
  using torch_ext_test::run_in_child;
  EXPECT_EQ(run_in_child([] { return std::string(); }), "");
  EXPECT_EQ(run_in_child([] { return std::string("wrong"); }), "wrong");
  EXPECT_NE(run_in_child([] {
              volatile int* null = nullptr;
              *null = 1;
              return std::string();
            }),
            "");
  const std::string blocked = run_in_child(
      [] {
        for (;;) {
          pause();
        }
        return std::string();
      },
      {/*cpu_seconds=*/10, /*seconds=*/1});
  EXPECT_NE(blocked.find("still running after 1 s"), std::string::npos) << blocked;
  const std::string spinning = run_in_child(
      [] {
        for (volatile uint64_t i = 0;; i = i + 1) {
        }
        return std::string();
      },
      {/*cpu_seconds=*/1, /*seconds=*/60});
  EXPECT_NE(spinning.find("more than 1 s of CPU"), std::string::npos) << spinning;
  const std::string allocated = run_in_child([] {
    std::vector<std::unique_ptr<char[]>> blocks;
    for (int i = 0; i < 80; ++i) { // 5 GiB (the limits count what is mapped, touched or not)
      blocks.emplace_back(new char[size_t{64} << 20]);
    }
    return std::string("allocated ") + std::to_string(blocks.size() * 64) + " MiB";
  });
  EXPECT_NE(allocated, "");
  EXPECT_EQ(allocated.rfind("allocated ", 0), std::string::npos) << "no memory limit: " << allocated;
  // In a batch: the case that ends its child is named, and the cases after it run.
  const auto failures = torch_ext_test::run_in_children(10, [](size_t i) -> std::string {
    if (i == 3) {
      std::abort();
    }
    return i == 7 ? "seven" : "";
  }, 4);
  ASSERT_EQ(failures.size(), 2u);
  EXPECT_EQ(failures[0].index, 3u);
  EXPECT_NE(failures[0].why.find("signal"), std::string::npos) << failures[0].why;
  EXPECT_EQ(failures[1].index, 7u);
  EXPECT_EQ(failures[1].why, "seven");
}

TEST(CheckpointFuzzTest, SeedsLoadAsTheyAreAndRebuilt) {
  torch_ext_test::FuzzCases runner(load_or_fail_cleanly);
  const std::vector<Seed> all = seeds(runner.root());
  ASSERT_GE(all.size(), 5u);
  for (const Seed& seed : all) {
    for (const bool zip64 : {false, true}) {
      const fs::path path = runner.root() / (seed.name + ".pt");
      write_bytes(path, torch_ext_test::write_zip(seed.records, zip64, nullptr));
      EXPECT_NO_THROW(torch_ext::read_checkpoint_file(path.string())) << seed.name;
    }
  }
}

TEST(CheckpointFuzzTest, RandomDamageLoadsOrFailsNamingTheFile) {
  torch_ext_test::FuzzCases runner(load_or_fail_cleanly);
  const fs::path valid_path = runner.root() / "valid.pt";
  torch_ext::write_checkpoint_file(valid_path.string(), sample());
  const std::string valid = read_bytes(valid_path);
  // data.pkl is the first record of our files: its local header starts the
  // file, its central directory entry comes first.
  const size_t pickle_offset = 30 + torch_ext_test::read_le(valid, 26, 2) + torch_ext_test::read_le(valid, 28, 2);
  const size_t directory = torch_ext_test::read_le(valid, valid.size() - 22 + 16, 4);
  const size_t pickle_size = torch_ext_test::read_le(valid, directory + 20, 4);
  ASSERT_EQ(valid.substr(pickle_offset, 2), "\x80\x02");

  std::mt19937_64 rng(fuzz_seed());
  for (uint64_t i = 0, cases = fuzz_cases(); i < cases; ++i) {
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
    runner.add("random-" + std::to_string(i) + ".pt", std::move(bytes));
  }
  std::cout << runner.finish() << " random cases" << std::endl;
}

TEST(CheckpointFuzzTest, PickleMutationsLoadOrFailNamingTheFile) {
  torch_ext_test::FuzzCases runner(load_or_fail_cleanly);
  const std::vector<Seed> all = seeds(runner.root());
  std::mt19937_64 rng(fuzz_seed() + 1);
  torch_ext_test::PickleMutator mutator(rng);
  for (uint64_t i = 0, cases = fuzz_cases(); i < cases; ++i) {
    const Seed& seed = all[i % all.size()];
    std::vector<ZipRecord> records = seed.records;
    ZipRecord& pickle = pickle_record(records);
    pickle.data = mutator.mutate(pickle.data);
    // With its CRC32 right, so that a verified load reads the pickle too.
    runner.add(
        "pickle-" + seed.name + "-" + std::to_string(i) + ".pt", torch_ext_test::write_zip(records, rng() % 4 == 0, nullptr));
  }
  std::cout << runner.finish() << " pickle mutations" << std::endl;
}

// The archive's names and records, changed as an attacker would: a record
// moved out of the folder, shadowed, named twice or in another case, its
// local name changed, records dropped or reordered.
void mutate_records(std::mt19937_64& rng, std::vector<ZipRecord>& records) {
  const auto any = [&]() -> ZipRecord& { return records[rng() % records.size()]; };
  const std::string folder = records[0].name.substr(0, records[0].name.find('/') + 1);
  switch (rng() % 8) {
    case 0: { // named twice, with other bytes
      ZipRecord twin = any();
      std::reverse(twin.data.begin(), twin.data.end());
      records.insert(records.begin() + static_cast<std::ptrdiff_t>(rng() % (records.size() + 1)), twin);
      break;
    }
    case 1: { // outside the folder, or in another
      ZipRecord& record = any();
      record.name = (rng() % 2 == 0 ? "" : "other/") + record.name.substr(folder.size());
      break;
    }
    case 2: { // a shadow outside the folder, listed first
      ZipRecord shadow = any();
      shadow.name = shadow.name.substr(folder.size());
      records.insert(records.begin(), shadow);
      break;
    }
    case 3: { // another case
      ZipRecord& record = any();
      std::transform(record.name.begin(), record.name.end(), record.name.begin(), [](char c) {
        return static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      });
      break;
    }
    case 4: // a local header that names another record
      any().local_name = any().name + (rng() % 2 == 0 ? "" : "x");
      break;
    case 5: // one dropped
      if (records.size() > 1) {
        records.erase(records.begin() + static_cast<std::ptrdiff_t>(rng() % records.size()));
      }
      break;
    case 6: // two swapped
      std::swap(any(), any());
      break;
    default: // two with their data swapped
      std::swap(any().data, any().data);
      break;
  }
}

TEST(CheckpointFuzzTest, ZipMutationsLoadOrFailNamingTheFile) {
  torch_ext_test::FuzzCases runner(load_or_fail_cleanly);
  const std::vector<Seed> all = seeds(runner.root());
  std::mt19937_64 rng(fuzz_seed() + 2);
  for (uint64_t i = 0, cases = fuzz_cases(); i < cases; ++i) {
    const Seed& seed = all[i % all.size()];
    std::vector<ZipRecord> records = seed.records;
    if (rng() % 2 == 0) {
      mutate_records(rng, records);
    }
    std::vector<ZipField> fields;
    std::string bytes = torch_ext_test::write_zip(records, rng() % 2 == 0, &fields);
    // Fields (sizes, offsets, counts, name lengths, CRCs, zip64 fields) set
    // to values that mean something to a reader.
    for (int edits = static_cast<int>(rng() % 3); edits > 0; --edits) {
      const ZipField& field = fields[rng() % fields.size()];
      const uint64_t old = torch_ext_test::read_le(bytes, field.offset, field.width);
      const uint64_t max = field.width == 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * field.width)) - 1;
      const std::vector<uint64_t> values = {
          0, 1, old + 1, old - 1, max, max - 1, bytes.size(), bytes.size() - 1, old * 2, old / 2,
          torch_ext_test::read_le(bytes, fields[rng() % fields.size()].offset, field.width), rng()};
      torch_ext_test::write_le(bytes, field.offset, field.width, values[rng() % values.size()] & max);
    }
    if (rng() % 8 == 0) { // cut short, or with bytes before or after it
      switch (rng() % 3) {
        case 0:
          bytes.resize(rng() % bytes.size());
          break;
        case 1:
          bytes.insert(0, std::string(rng() % 100, 'P'));
          break;
        default:
          bytes += std::string(rng() % 100, 'K');
          break;
      }
    }
    runner.add("zip-" + seed.name + "-" + std::to_string(i) + ".pt", std::move(bytes));
  }
  std::cout << runner.finish() << " zip mutations" << std::endl;
}

TEST(CheckpointFuzzTest, EveryCaseThatEverFailedLoadsOrFailsNamingTheFile) {
  std::vector<fs::path> kept;
  for (const auto& entry : fs::directory_iterator(test_data() / "hostile")) {
    const fs::path& path = entry.path();
    if (path.extension() == ".pt" || (path.extension() == ".zst" && path.stem().extension() == ".pt")) {
      kept.push_back(path);
    }
  }
  std::sort(kept.begin(), kept.end());
  ASSERT_FALSE(kept.empty());
  torch_ext_test::FuzzCases(load_or_fail_cleanly).replay(kept);
}

} // namespace
