// LocalShards, save_sharded by ranks as threads of one process (through a
// real HashStore or TCPStore, into real files) and load_sharded into other
// layouts, read back by torch_ext's DCP reader.
#include <torch_ext/checkpoint_file.h>
#include <torch_ext/checkpoint_values.h>
#include <torch_ext/dcp.h>
#include <torch_ext/dcp_sharded.h>
#include <torch_ext/local_shards.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "test_files.h"
#include "test_threads.h"
#include "test_values.h"

namespace {

namespace fs = std::filesystem;
using torch_ext::LocalShards;
using torch_ext::Shard;
using torch_ext::dcp::SaveRanks;
using Failure = std::optional<std::string>;

using torch_ext::testing::kWaitLimit;
using torch_ext_test::string_dict;

// The box of `whole` at `offsets` of `sizes`, as a tensor of its own.
at::Tensor box(const at::Tensor& whole, const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes) {
  at::Tensor part = whole;
  for (size_t d = 0; d < offsets.size(); ++d) {
    part = part.narrow(static_cast<int64_t>(d), offsets[d], sizes[d]);
  }
  return part.clone();
}

// The rows [begin, end) of each of `parts` row counts.
std::vector<std::pair<int64_t, int64_t>> row_split(const std::vector<int64_t>& parts) {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  int64_t begin = 0;
  for (const int64_t rows : parts) {
    ranges.emplace_back(begin, begin + rows);
    begin += rows;
  }
  return ranges;
}

// `whole` split by rows into `parts` row counts: rank r's LocalShards.
c10::IValue rows_of(const at::Tensor& whole, const std::vector<int64_t>& parts, size_t rank) {
  const auto [begin, end] = row_split(parts)[rank];
  std::vector<int64_t> offsets(static_cast<size_t>(whole.dim()), 0);
  offsets[0] = begin;
  std::vector<int64_t> sizes = whole.sizes().vec();
  sizes[0] = end - begin;
  return torch_ext::make_local_shards({Shard{box(whole, offsets, sizes), offsets}}, whole.sizes().vec());
}

// Each rank's state: {"w": its rows of `whole`}, split into `parts` row counts.
std::vector<c10::IValue> row_split_states(const at::Tensor& whole, const std::vector<int64_t>& parts) {
  std::vector<c10::IValue> states;
  for (size_t rank = 0; rank < parts.size(); ++rank) {
    auto state = string_dict();
    state.insert("w", rows_of(whole, parts, rank));
    states.push_back(state);
  }
  return states;
}

bool contains(const Failure& failure, const std::string& part) {
  return failure && failure->find(part) != std::string::npos;
}

c10::intrusive_ptr<c10d::Store> tcp_store() {
  c10d::TCPStoreOptions options;
  options.port = 0;
  options.isServer = true;
  options.waitWorkers = false;
  options.timeout = kWaitLimit;
  return c10::make_intrusive<c10d::TCPStore>("127.0.0.1", options);
}

// A store that forwards to `inner` and counts the calls made on it and on
// its clones (the exchange's connection).
class CountsCalls : public c10d::Store {
 public:
  CountsCalls(c10::intrusive_ptr<c10d::Store> inner, std::shared_ptr<std::atomic<int64_t>> calls)
      : inner_(std::move(inner)), calls_(std::move(calls)) {}

  int64_t calls() const {
    return *calls_;
  }

  c10::intrusive_ptr<c10d::Store> clone() override {
    return c10::make_intrusive<CountsCalls>(inner_, calls_);
  }
  void set(const std::string& key, const std::vector<uint8_t>& value) override {
    ++*calls_;
    inner_->set(key, value);
  }
  std::vector<uint8_t> compareSet(
      const std::string& key,
      const std::vector<uint8_t>& current,
      const std::vector<uint8_t>& desired) override {
    ++*calls_;
    return inner_->compareSet(key, current, desired);
  }
  std::vector<uint8_t> get(const std::string& key) override {
    ++*calls_;
    return inner_->get(key);
  }
  int64_t add(const std::string& key, int64_t value) override {
    ++*calls_;
    return inner_->add(key, value);
  }
  bool deleteKey(const std::string& key) override {
    ++*calls_;
    return inner_->deleteKey(key);
  }
  bool check(const std::vector<std::string>& keys) override {
    ++*calls_;
    return inner_->check(keys);
  }
  int64_t getNumKeys() override {
    ++*calls_;
    return inner_->getNumKeys();
  }
  void wait(const std::vector<std::string>& keys) override {
    ++*calls_;
    inner_->wait(keys);
  }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    ++*calls_;
    inner_->wait(keys, timeout);
  }

 private:
  c10::intrusive_ptr<c10d::Store> inner_;
  std::shared_ptr<std::atomic<int64_t>> calls_;
};

// Runs `body(rank)` on `world_size` threads at once; what each threw.
std::vector<Failure> on_ranks(int64_t world_size, const std::function<void(int64_t)>& body) {
  std::vector<std::future<Failure>> ranks;
  for (int64_t rank = 0; rank < world_size; ++rank) {
    ranks.push_back(std::async(std::launch::async, [&body, rank]() -> Failure {
      try {
        body(rank);
      } catch (const c10::Error& e) {
        return e.what_without_backtrace();
      }
      return std::nullopt;
    }));
  }
  std::vector<Failure> failures;
  for (auto& rank : ranks) {
    if (rank.wait_for(kWaitLimit) != std::future_status::ready) {
      ADD_FAILURE() << "a rank did not end within " << kWaitLimit.count() << " s";
      std::abort(); // its thread refers to this frame
    }
    failures.push_back(rank.get());
  }
  return failures;
}

// The job's store, which every save of a test uses (as a job's saves do).
class DcpShardedTest : public torch_ext_test::TempFolderTest, public ::testing::WithParamInterface<bool> {
 protected:
  DcpShardedTest()
      : store_(GetParam() ? tcp_store() : c10::intrusive_ptr<c10d::Store>(c10::make_intrusive<c10d::HashStore>())) {}

  // Every rank's save of states[rank] into `folder`.
  std::vector<Failure> save(
      const std::string& folder,
      const std::vector<c10::IValue>& states,
      int64_t thread_count = 1,
      int64_t max_chunk_bytes = torch_ext::DcpWriteOptions().max_chunk_bytes) {
    const auto& store = store_;
    const auto world_size = static_cast<int64_t>(states.size());
    return on_ranks(world_size, [&](int64_t rank) {
      torch_ext::DcpWriteOptions options;
      options.thread_count = thread_count;
      options.sync = false;
      options.max_chunk_bytes = max_chunk_bytes;
      torch_ext::dcp::save_sharded(folder, states[rank], SaveRanks{store, rank, world_size, std::chrono::seconds(60)}, options);
    });
  }

  static void expect_no_failure(const std::vector<Failure>& failures) {
    for (size_t rank = 0; rank < failures.size(); ++rank) {
      EXPECT_FALSE(failures[rank]) << "rank " << rank << ": " << failures[rank].value_or("");
    }
  }

  // The store (a TCPStore's server thread) goes before the folder: TSan
  // cannot see that the server's sockets are closed before the folder's
  // removal reuses their file descriptors.
  void TearDown() override {
    store_.reset();
    TempFolderTest::TearDown();
  }

 private:
  c10::intrusive_ptr<c10d::Store> store_;
};

TEST(LocalShardsTest, IsAValueKind) {
  const c10::IValue shards = torch_ext::make_local_shards({Shard{at::ones({2, 3}), {1, 0}}}, {4, 3});
  EXPECT_EQ(torch_ext::value_kind(shards), torch_ext::ValueKind::LocalShards);
  const auto held = torch_ext::as_local_shards(shards);
  ASSERT_TRUE(held);
  EXPECT_EQ(held->global_shape(), (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(held->dtype(), at::kFloat);
  EXPECT_FALSE(torch_ext::as_local_shards(at::ones({2})));
}

TEST(LocalShardsTest, RefusesPartsThatDoNotFit) {
  const auto message = [](std::vector<Shard> shards, std::vector<int64_t> global) -> std::string {
    try {
      torch_ext::make_local_shards(std::move(shards), std::move(global));
    } catch (const c10::ValueError& e) {
      return e.what_without_backtrace();
    }
    return "no error";
  };
  EXPECT_NE(message({Shard{at::ones({2, 3}), {3, 0}}}, {4, 3}).find("lies outside the global shape [4, 3]"), std::string::npos);
  EXPECT_NE(message({Shard{at::ones({2, 3}), {-1, 0}}}, {4, 3}).find("lies outside"), std::string::npos);
  EXPECT_NE(message({Shard{at::ones({2}), {0}}}, {4, 3}).find("of 2 dims"), std::string::npos);
  EXPECT_NE(
      message({Shard{at::ones({2, 3}), {0, 0}}, Shard{at::ones({2, 3}, at::kDouble), {2, 0}}}, {4, 3}).find("part 1 is Double"),
      std::string::npos);
  EXPECT_NE(message({}, {4, 3}).find("at least one part"), std::string::npos);
}

class LocalShardsFileTest : public torch_ext_test::TempFolderTest {};

TEST_F(LocalShardsFileTest, OtherSavesRefuseIt) {
  auto state = string_dict();
  state.insert("embedding", torch_ext::make_local_shards({Shard{at::ones({2, 3}), {0, 0}}}, {4, 3}));
  const std::string folder = path("ckpt");
  try {
    torch_ext::write_dcp_checkpoint(folder, state);
    ADD_FAILURE() << "write_dcp_checkpoint took a LocalShards";
  } catch (const c10::TypeError& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("'embedding'"), std::string::npos) << e.what_without_backtrace();
    EXPECT_NE(std::string(e.what_without_backtrace()).find("save_sharded"), std::string::npos) << e.what_without_backtrace();
  }
  EXPECT_THROW(torch_ext::write_checkpoint_file(folder + ".pt", state), c10::TypeError);
  EXPECT_FALSE(fs::exists(folder + ".pt"));
}

TEST_P(DcpShardedTest, FourRanksSaveWhatReadsBackWhole) {
  const at::Tensor rows = at::randn({7, 8});
  const at::Tensor columns = at::randint(0, 1000, {6, 10}, at::kLong);
  const at::Tensor grid = at::randn({5, 4}, at::kDouble);
  const at::Tensor bias = at::randn({8});
  std::vector<c10::IValue> states;
  for (size_t rank = 0; rank < 4; ++rank) {
    auto state = string_dict();
    auto model = string_dict();
    model.insert("rows", rows_of(rows, {2, 2, 2, 1}, rank)); // uneven
    const int64_t column = std::vector<int64_t>{0, 3, 6, 8}[rank];
    const int64_t width = std::vector<int64_t>{3, 3, 2, 2}[rank];
    model.insert(
        "columns", torch_ext::make_local_shards({Shard{box(columns, {0, column}, {6, width}), {0, column}}}, {6, 10}));
    // A 2 x 2 grid of boxes, rank 0 holding two of them and rank 3 none.
    std::vector<Shard> boxes;
    const std::vector<std::vector<int64_t>> owned = {{0, 0, 3, 2}, {0, 2, 3, 2}, {3, 0, 2, 2}, {3, 2, 2, 2}};
    for (size_t b = 0; b < owned.size(); ++b) {
      if (b % 3 == rank) { // 0: boxes 0 and 3; 1: box 1; 2: box 2
        boxes.push_back(Shard{box(grid, {owned[b][0], owned[b][1]}, {owned[b][2], owned[b][3]}), {owned[b][0], owned[b][1]}});
      }
    }
    if (!boxes.empty()) {
      model.insert("grid", torch_ext::make_local_shards(std::move(boxes), {5, 4}));
    }
    model.insert("bias", bias.clone()); // replicated
    state.insert("model", model);
    state.insert("step", int64_t{42});
    if (rank == 2) {
      state.insert("only_rank_2", std::string("two"));
    }
    states.push_back(state);
  }
  const std::string folder = path("ckpt");
  expect_no_failure(save(folder, states, 2));

  const c10::IValue read = torch_ext::read_dcp_checkpoint(folder);
  const auto model = read.toGenericDict().at("model").toGenericDict();
  EXPECT_TRUE(at::equal(model.at("rows").toTensor(), rows));
  EXPECT_TRUE(at::equal(model.at("columns").toTensor(), columns));
  EXPECT_TRUE(at::equal(model.at("grid").toTensor(), grid));
  EXPECT_TRUE(at::equal(model.at("bias").toTensor(), bias));
  EXPECT_EQ(read.toGenericDict().at("step").toInt(), 42);
  EXPECT_EQ(read.toGenericDict().at("only_rank_2").toStringRef(), "two");

  // Each rank wrote its own files; a value several ranks hold, its lowest.
  const torch_ext::dcp::Metadata metadata = torch_ext::dcp::read_metadata(folder);
  for (int64_t rank = 0; rank < 4; ++rank) {
    EXPECT_TRUE(fs::exists(fs::path(folder) / torch_ext::dcp::data_file_name(rank, 1)));
  }
  for (const auto& [index, location] : metadata.storage_data) {
    const std::string file = location.relative_path.substr(0, 4);
    if (index.fqn == "model.bias" || index.fqn == "step") {
      EXPECT_EQ(file, "__0_") << index.fqn;
    } else if (index.fqn == "only_rank_2") {
      EXPECT_EQ(file, "__2_");
    } else if (index.fqn == "model.rows") {
      EXPECT_EQ(file, "__" + std::to_string(index.offset->at(0) / 2) + "_") << index.fqn;
    }
  }
  EXPECT_EQ(metadata.storage_data.size(), 4u + 4u + 4u + 1u + 1u + 1u);
}

TEST_P(DcpShardedTest, PartsThatDoNotTileAreRefusedBeforeAnyWrite) {
  const at::Tensor whole = at::randn({6, 2});
  const auto states_with = [&](std::vector<std::pair<int64_t, int64_t>> ranges) {
    std::vector<c10::IValue> states;
    for (const auto& [begin, end] : ranges) {
      auto state = string_dict();
      state.insert("w", torch_ext::make_local_shards({Shard{box(whole, {begin, 0}, {end - begin, 2}), {begin, 0}}}, {6, 2}));
      states.push_back(state);
    }
    return states;
  };
  const std::string folder = path("ckpt");
  for (const auto& [ranges, what] : std::vector<std::pair<std::vector<std::pair<int64_t, int64_t>>, std::string>>{
           {{{0, 3}, {2, 5}}, "overlap at the offsets [0, 0] and [2, 0]"},
           {{{0, 3}, {3, 5}}, "hold 10 elements of its 12"},
           {{{0, 3}, {0, 2}}, "overlap at the offsets [0, 0]"}}) {
    for (const Failure& failure : save(folder, states_with(ranges))) {
      EXPECT_TRUE(contains(failure, "entry 'w'") && contains(failure, what)) << failure.value_or("no error");
    }
    EXPECT_TRUE(!fs::exists(folder) || fs::is_empty(folder)) << "a refused save wrote files";
  }
}

TEST_P(DcpShardedTest, RanksThatDisagreeOnAKeyAreRefused) {
  const std::string folder = path("ckpt");
  const auto part = [](at::ScalarType dtype, int64_t rows, int64_t offset) {
    return torch_ext::make_local_shards({Shard{at::zeros({rows, 2}, dtype), {offset, 0}}}, {4, 2});
  };
  auto state0 = string_dict();
  state0.insert("w", part(at::kFloat, 2, 0));
  auto state1 = string_dict();
  state1.insert("w", part(at::kHalf, 2, 2));
  for (const Failure& failure : save(folder, {state0, state1})) {
    EXPECT_TRUE(contains(failure, "entry 'w' is a Float tensor of global shape [4, 2] and a Half tensor") &&
                contains(failure, "on rank 0 and 1"))
        << failure.value_or("no error");
  }
  state1 = string_dict();
  state1.insert("w", at::zeros({4, 2}));
  for (const Failure& failure : save(folder, {state0, state1})) {
    EXPECT_TRUE(contains(failure, "entry 'w' is a LocalShards and a tensor on rank 0 and 1")) << failure.value_or("no error");
  }
  EXPECT_FALSE(fs::exists(fs::path(folder) / ".metadata"));
}

TEST_P(DcpShardedTest, ARankThatFailsItsWriteMakesNoRankCommit) {
  const at::Tensor whole = at::randn({4, 3});
  const std::vector<c10::IValue> states = row_split_states(whole, {2, 2});
  const std::string folder = path("ckpt");
  expect_no_failure(save(folder, states));
  ASSERT_TRUE(fs::exists(fs::path(folder) / ".metadata"));
  // Rank 1's data file cannot be put in place: a folder holds its name.
  fs::remove(fs::path(folder) / torch_ext::dcp::data_file_name(1, 0));
  fs::create_directories(fs::path(folder) / torch_ext::dcp::data_file_name(1, 0) / "in_the_way");
  for (const Failure& failure : save(folder, states)) {
    EXPECT_TRUE(contains(failure, "was not committed") && contains(failure, "rank 1 could not write its data files"))
        << failure.value_or("no error");
  }
  // The previous commit went before any rank wrote.
  EXPECT_FALSE(fs::exists(fs::path(folder) / ".metadata"));
}

TEST_P(DcpShardedTest, ARankThatCannotPlanOrDoesNotComeFailsEveryRank) {
  const std::string folder = path("ckpt");
  auto good = string_dict();
  good.insert("w", at::zeros({2}));
  auto bad = string_dict();
  bad.insert("w", at::zeros({2}));
  bad.insert("future", c10::make_intrusive<c10::ivalue::Future>(c10::IntType::get()));
  for (const Failure& failure : save(folder, {good, good, bad})) {
    EXPECT_TRUE(contains(failure, "rank 2: ") && contains(failure, "'future'")) << failure.value_or("no error");
  }
  // Rank 1 never comes: rank 0 names it, and no rank waits past the timeout.
  const auto store = c10::make_intrusive<c10d::HashStore>();
  const std::vector<Failure> failures = on_ranks(1, [&](int64_t rank) {
    torch_ext::dcp::save_sharded(folder, good, SaveRanks{store, rank, 2, std::chrono::milliseconds(200)});
  });
  EXPECT_TRUE(contains(failures[0], "rank(s) 1 did not send their plan within 200 ms")) << failures[0].value_or("no error");
  EXPECT_FALSE(fs::exists(fs::path(folder) / ".metadata"));
}

TEST(DcpShardedStoreTest, EachRankButZeroMakesAConstantNumberOfStoreCalls) {
  // Store calls of ranks 1 to 3 for a save of `items` parts each.
  const auto follower_calls = [](int64_t items) {
    const auto inner = c10::make_intrusive<c10d::HashStore>();
    std::vector<c10::intrusive_ptr<CountsCalls>> stores;
    for (int64_t rank = 0; rank < 4; ++rank) {
      stores.push_back(c10::make_intrusive<CountsCalls>(inner, std::make_shared<std::atomic<int64_t>>(0)));
    }
    const std::string folder =
        (fs::temp_directory_path() / ("torch_ext_test.store_calls." + std::to_string(::getpid()) + "." + std::to_string(items)))
            .string();
    const std::vector<Failure> failures = on_ranks(4, [&](int64_t rank) {
      auto state = string_dict();
      for (int64_t i = 0; i < items; ++i) {
        state.insert("w" + std::to_string(i), torch_ext::make_local_shards({Shard{at::zeros({1, 2}), {rank, 0}}}, {4, 2}));
      }
      state.insert("step", int64_t{1});
      torch_ext::DcpWriteOptions options;
      options.sync = false;
      torch_ext::dcp::save_sharded(folder, state, SaveRanks{stores[rank], rank, 4, std::chrono::seconds(60)}, options);
    });
    fs::remove_all(folder);
    std::vector<int64_t> calls;
    for (size_t rank = 0; rank < 4; ++rank) {
      EXPECT_FALSE(failures[rank]) << failures[rank].value_or("");
      if (rank > 0) {
        calls.push_back(stores[rank]->calls());
      }
    }
    return calls;
  };
  const std::vector<int64_t> few = follower_calls(1);
  EXPECT_EQ(follower_calls(200), few);
  for (const int64_t calls : few) {
    EXPECT_LE(calls, 8);
  }
}

TEST_P(DcpShardedTest, AReshardReadsOnlyTheRowsEachRankOwns) {
  // 4 ranks save 1,200 rows of 8 KiB in chunks of at most 64 KiB; 3 ranks
  // load them, verified or not.
  const at::Tensor whole = at::randn({1200, 2048});
  const std::vector<c10::IValue> states = row_split_states(whole, {300, 300, 300, 300});
  const std::string folder = path("ckpt");
  expect_no_failure(save(folder, states, 1, /*max_chunk_bytes=*/64 << 10));
  EXPECT_EQ(std::get<torch_ext::dcp::TensorEntry>(torch_ext::dcp::read_metadata(folder).state_dict_metadata[0].second).chunks.size(), 4u * 38u);
  for (const bool verify : {false, true}) {
    for (size_t rank = 0; rank < 3; ++rank) {
      const auto [begin, end] = row_split({400, 400, 400})[rank];
      const at::Tensor part = at::full({end - begin, 2048}, -1.0f);
      auto into = string_dict();
      into.insert("w", torch_ext::make_local_shards({Shard{part, {begin, 0}}}, {1200, 2048}));
      const torch_ext::dcp::CheckpointReader reader(folder, verify);
      torch_ext::dcp::load_sharded(reader, into);
      EXPECT_TRUE(at::equal(part, whole.narrow(0, begin, end - begin))) << "rank " << rank;
      EXPECT_LE(reader.bytes_read(), part.nbytes() * 11 / 10) << "rank " << rank << ", verify " << verify;
      EXPECT_GE(reader.bytes_read(), part.nbytes()) << "rank " << rank << ", verify " << verify;
    }
  }
  // Without the split, a verified load reads whole saved chunks: rank 1's
  // rows 400 to 800 are in 2 chunks of 300 rows.
  const std::string unsplit = path("unsplit");
  expect_no_failure(save(unsplit, states, 1, /*max_chunk_bytes=*/0));
  const at::Tensor part = at::zeros({400, 2048});
  auto into = string_dict();
  into.insert("w", torch_ext::make_local_shards({Shard{part, {400, 0}}}, {1200, 2048}));
  const torch_ext::dcp::CheckpointReader reader(unsplit, /*verify=*/true);
  torch_ext::dcp::load_sharded(reader, into);
  EXPECT_GE(reader.bytes_read(), part.nbytes() * 3 / 2);
}

// {"names": [tensor, text]}: a list that holds a tensor, which flattens
// by index.
c10::IValue extra(const at::Tensor& tensor, const std::string& text) {
  c10::impl::GenericList names(c10::AnyType::get());
  names.push_back(tensor);
  names.push_back(text);
  auto dict = string_dict();
  dict.insert("names", names);
  return dict;
}

TEST_P(DcpShardedTest, LoadsIntoAnyLayout) {
  const at::Tensor whole = at::randn({9, 10});
  std::vector<c10::IValue> states;
  // Saved by 3 ranks in columns of 4, 4 and 2.
  for (int64_t rank = 0; rank < 3; ++rank) {
    const int64_t column = 4 * rank;
    const int64_t width = rank == 2 ? 2 : 4;
    auto state = string_dict();
    state.insert("w", torch_ext::make_local_shards({Shard{box(whole, {0, column}, {9, width}), {0, column}}}, {9, 10}));
    state.insert("step", int64_t{7});
    state.insert("extra", extra(at::arange(3), "saved"));
    states.push_back(state);
  }
  const std::string folder = path("ckpt");
  expect_no_failure(save(folder, states));

  // Uneven rows across the columns, several parts on one rank, a box inside
  // one saved chunk, a whole copy, a 1 x 1 box.
  const std::vector<std::vector<std::vector<int64_t>>> layouts = {
      {{0, 0, 5, 10}},
      {{5, 0, 4, 3}, {5, 3, 4, 7}},
      {{1, 1, 2, 2}},
      {{0, 0, 9, 10}},
      {{8, 9, 1, 1}},
  };
  for (const auto& layout : layouts) {
    std::vector<Shard> parts;
    for (const auto& b : layout) {
      parts.push_back(Shard{at::full({b[2], b[3]}, -1.0f), {b[0], b[1]}});
    }
    auto into = string_dict();
    into.insert("w", torch_ext::make_local_shards(parts, {9, 10}));
    into.insert("step", int64_t{0});
    const at::Tensor names_0 = at::zeros({3}, at::kLong);
    into.insert("extra", extra(names_0, "target's"));
    torch_ext::dcp::load_sharded(folder, into);
    const auto names = into.at("extra").toGenericDict().at("names").toList();
    EXPECT_TRUE(at::equal(names_0, at::arange(3)));
    EXPECT_EQ(names.get(1).toStringRef(), "saved");
    for (size_t i = 0; i < parts.size(); ++i) {
      EXPECT_TRUE(at::equal(parts[i].tensor, box(whole, parts[i].offsets, parts[i].tensor.sizes().vec())))
          << "box " << c10::IntArrayRef(layout[i]);
    }
    EXPECT_EQ(into.at("step").toInt(), 7);
  }
  // A plain tensor takes the whole tensor.
  auto into = string_dict();
  const at::Tensor full = at::zeros({9, 10});
  into.insert("w", full);
  torch_ext::dcp::load_sharded(folder, into);
  EXPECT_TRUE(at::equal(full, whole));
}

TEST_P(DcpShardedTest, ATargetOfAnotherShapeOrDtypeIsRefused) {
  const at::Tensor whole = at::randn({4, 2});
  const std::vector<c10::IValue> states = row_split_states(whole, {2, 2});
  const std::string folder = path("ckpt");
  expect_no_failure(save(folder, states));
  const auto message = [&](const c10::IValue& target) -> std::string {
    auto into = string_dict();
    into.insert("w", target);
    try {
      torch_ext::dcp::load_sharded(folder, into);
    } catch (const c10::ValueError& e) {
      return e.what_without_backtrace();
    }
    return "no error";
  };
  EXPECT_NE(
      message(torch_ext::make_local_shards({Shard{at::zeros({2, 2}), {0, 0}}}, {5, 2}))
          .find("entry 'w' is a Float tensor of global shape [4, 2] in the checkpoint and a Float tensor of global shape [5, 2]"),
      std::string::npos);
  EXPECT_NE(message(at::zeros({4, 2}, at::kDouble)).find("entry 'w' is a Float tensor"), std::string::npos);
  EXPECT_NE(message(int64_t{3}).find("entry 'w' is a tensor in the checkpoint"), std::string::npos);
  auto into = string_dict();
  into.insert("v", at::zeros({1}));
  EXPECT_THROW(torch_ext::dcp::load_sharded(folder, into), c10::ValueError);
}

TEST_P(DcpShardedTest, ADamagedRegionIsAnErrorWhenVerified) {
  const at::Tensor whole = at::randn({64, 16});
  const std::vector<c10::IValue> states = row_split_states(whole, {32, 32});
  const std::string folder = path("ckpt");
  expect_no_failure(save(folder, states));
  // A flipped byte in the middle of rank 1's rows.
  const fs::path file = fs::path(folder) / torch_ext::dcp::data_file_name(1, 0);
  std::string bytes = torch_ext_test::read_bytes(file);
  const std::string needle(reinterpret_cast<const char*>(whole[48].data_ptr<float>()), 64);
  const size_t at = bytes.find(needle);
  ASSERT_NE(at, std::string::npos);
  bytes[at + 3] ^= 0x10;
  torch_ext_test::write_bytes(file, bytes);
  auto into = string_dict();
  into.insert("w", torch_ext::make_local_shards({Shard{at::zeros({8, 16}), {44, 0}}}, {64, 16}));
  EXPECT_THROW(torch_ext::dcp::load_sharded(folder, into, /*verify=*/true), c10::Error);
}

INSTANTIATE_TEST_SUITE_P(Stores, DcpShardedTest, ::testing::Values(false, true), [](const auto& info) {
  return info.param ? "TCPStore" : "HashStore";
});

} // namespace
