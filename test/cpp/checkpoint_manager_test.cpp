#include <torch_ext/checkpoint_file.h>
#include <torch_ext/checkpoint_manager.h>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/torch.h>

#include "test_checks.h"
#include "test_files.h"
#include "test_threads.h"

namespace {

namespace fs = std::filesystem;
using c10::impl::GenericDict;
using torch_ext::CheckpointManager;
using torch_ext::CheckpointManagerOptions;
using torch_ext::FuturePtr;

using torch_ext::testing::kWaitLimit;
using torch_ext_test::contains;
using torch_ext_test::FileSizeLimit;

class CheckpointManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
        ("torch_ext_checkpoint_manager_test." + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override {
    fs::remove_all(root_);
  }

  std::string root() const {
    return (root_ / "ckpt").string();
  }
  std::string at(const std::string& relative) const {
    return (root_ / "ckpt" / relative).string();
  }

  fs::path root_;
};

CheckpointManagerOptions options(
    std::optional<int64_t> max_to_keep = std::nullopt,
    std::optional<int64_t> keep_every_n_steps = std::nullopt) {
  CheckpointManagerOptions options;
  options.max_to_keep = max_to_keep;
  options.keep_every_n_steps = keep_every_n_steps;
  return options;
}

CheckpointManagerOptions rank_options(
    int64_t rank,
    int64_t world_size,
    c10::intrusive_ptr<c10d::Store> store,
    std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  CheckpointManagerOptions options;
  options.rank = rank;
  options.world_size = world_size;
  options.store = std::move(store);
  options.barrier_timeout = timeout;
  return options;
}

// Waits, at most kWaitLimit, for `future`; returns its error message, or ""
// when it completed with a value.
std::string outcome_of(const FuturePtr& future) {
  std::mutex mutex;
  std::condition_variable done;
  bool completed = false;
  torch_ext::on_complete(future, [&](c10::ivalue::Future&) {
    std::lock_guard<std::mutex> lock(mutex);
    completed = true;
    done.notify_all();
  });
  std::unique_lock<std::mutex> lock(mutex);
  if (!done.wait_for(lock, kWaitLimit, [&] { return completed; })) {
    ADD_FAILURE() << "a future did not complete within " << kWaitLimit.count() << " s";
    std::abort(); // the callback refers to this frame
  }
  return future->hasError() ? future->tryRetrieveErrorMessage() : "";
}

void expect_completes(const FuturePtr& future) {
  EXPECT_EQ(outcome_of(future), "");
}

GenericDict state_of(int64_t step, int64_t rank = 0) {
  GenericDict state(c10::StringType::get(), c10::AnyType::get());
  state.insert("step", step);
  state.insert("rank", rank);
  state.insert("weight", torch::full({64, 16}, static_cast<float>(step * 100 + rank)));
  return state;
}

int64_t step_in(const c10::IValue& loaded) {
  return loaded.toGenericDict().at("step").toInt();
}

void expect_state(const c10::IValue& loaded, int64_t step, int64_t rank = 0) {
  const GenericDict dict = loaded.toGenericDict();
  EXPECT_EQ(dict.at("step").toInt(), step);
  EXPECT_EQ(dict.at("rank").toInt(), rank);
  EXPECT_TRUE(torch::equal(dict.at("weight").toTensor(), torch::full({64, 16}, static_cast<float>(step * 100 + rank))));
}

void save_and_commit(CheckpointManager& manager, int64_t step) {
  auto [staged, committed] = manager.save(step, state_of(step));
  expect_completes(committed);
  EXPECT_TRUE(staged->completed() && !staged->hasError());
}

std::vector<std::string> names_in(const std::string& folder) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(folder)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Temporary files anywhere under `folder`, by the file layer's naming.
std::vector<std::string> temporaries_under(const std::string& folder) {
  std::vector<std::string> found;
  for (const auto& entry : fs::recursive_directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 4 && name[0] == '.' && name.compare(name.size() - 4, 4, ".tmp") == 0) {
      found.push_back(entry.path().string());
    }
  }
  return found;
}

using Steps = std::vector<int64_t>;

TEST_F(CheckpointManagerTest, SavedStepsAreCommittedListedAndLoadBack) {
  CheckpointManager manager(root());
  EXPECT_EQ(manager.all_steps(), Steps{});
  EXPECT_EQ(manager.latest_step(), std::nullopt);
  save_and_commit(manager, 10);
  save_and_commit(manager, 20);
  EXPECT_EQ(manager.all_steps(), (Steps{10, 20}));
  EXPECT_EQ(manager.latest_step(), 20);
  expect_state(manager.load(10), 10);
  expect_state(manager.load(), 20);
  EXPECT_EQ(manager.step_path(20), at("step_20"));
  EXPECT_EQ(names_in(at("step_20")), (std::vector<std::string>{"checkpoint_0.pt", "commit_success.txt"}));
  // The rank's file is the file layer's, readable without the manager.
  expect_state(torch_ext::read_checkpoint_file(at("step_20/checkpoint_0.pt")), 20);
}

TEST_F(CheckpointManagerTest, LoadTakesTheFileLayersReadOptions) {
  CheckpointManager manager(root());
  save_and_commit(manager, 1);
  const c10::IValue loaded = manager.load(1, torch_ext::ReadOptions{false, {"step"}});
  EXPECT_EQ(loaded.toGenericDict().size(), 1u);
  EXPECT_EQ(step_in(loaded), 1);
}

TEST_F(CheckpointManagerTest, ARunResumesWhereTheLastCommittedStepLeftIt) {
  // A C++ training loop over a plain dict of tensors: interrupted after step
  // 7, resumed from the latest committed step, it ends where an
  // uninterrupted run ends.
  auto train = [](GenericDict& state, int64_t from, int64_t to, CheckpointManager* manager) {
    at::Tensor weight = state.at("weight").toTensor();
    for (int64_t step = from; step <= to; ++step) {
      weight.mul_(0.5).add_(static_cast<double>(step));
      state.insert_or_assign("step", step);
      if (manager != nullptr && step % 3 == 0) {
        auto [staged, committed] = manager->save(step, state);
        staged->waitAndThrow();
      }
    }
  };
  auto fresh = [] {
    GenericDict state(c10::StringType::get(), c10::AnyType::get());
    state.insert("weight", torch::ones({8}));
    state.insert("step", int64_t{0});
    return state;
  };
  GenericDict uninterrupted = fresh();
  train(uninterrupted, 1, 20, nullptr);

  {
    CheckpointManager manager(root(), options(/*max_to_keep=*/2));
    GenericDict state = fresh();
    train(state, 1, 7, &manager);
  }
  CheckpointManager manager(root(), options(/*max_to_keep=*/2));
  ASSERT_EQ(manager.latest_step(), 6);
  GenericDict state = manager.load().toGenericDict();
  state.insert_or_assign("weight", state.at("weight").toTensor().clone());
  train(state, state.at("step").toInt() + 1, 20, &manager);
  manager.close();
  EXPECT_TRUE(torch::equal(state.at("weight").toTensor(), uninterrupted.at("weight").toTensor()));
  EXPECT_EQ(manager.all_steps(), (Steps{15, 18}));
}

TEST_F(CheckpointManagerTest, TensorsMayChangeOnceStaged) {
  CheckpointManager manager(root());
  at::Tensor weight = torch::ones({256, 1024});
  GenericDict state(c10::StringType::get(), c10::AnyType::get());
  state.insert("weight", weight);
  auto [staged, committed] = manager.save(1, state);
  expect_completes(staged);
  weight.fill_(2);
  expect_completes(committed);
  EXPECT_TRUE(torch::equal(manager.load(1).toGenericDict().at("weight").toTensor(), torch::ones({256, 1024})));
}

TEST_F(CheckpointManagerTest, SavingACommittedStepThrowsAndLeavesItAsItWas) {
  {
    CheckpointManager manager(root());
    save_and_commit(manager, 5);
    try {
      manager.save(5, state_of(6));
      FAIL() << "saving a committed step did not throw";
    } catch (const c10::Error& e) {
      const std::string message = e.what_without_backtrace();
      EXPECT_TRUE(contains(message, "step 5 is already committed in '" + at("step_5") + "'")) << message;
    }
  }
  CheckpointManager manager(root()); // committed steps outlive the manager
  EXPECT_THROW(manager.save(5, state_of(6)), c10::Error);
  expect_state(manager.load(5), 5);
  save_and_commit(manager, 6);
}

TEST_F(CheckpointManagerTest, LoadOfAnUncommittedStepOrOfNoStepThrowsNamingIt) {
  CheckpointManager manager(root());
  try {
    manager.load();
    FAIL() << "load() without a committed step did not throw";
  } catch (const c10::Error& e) {
    EXPECT_TRUE(contains(e.what_without_backtrace(), "no committed step in '" + root() + "'"))
        << e.what_without_backtrace();
  }
  save_and_commit(manager, 1);
  try {
    manager.load(2);
    FAIL() << "load(2) of an uncommitted step did not throw";
  } catch (const c10::Error& e) {
    EXPECT_TRUE(contains(e.what_without_backtrace(), "step 2 is not committed in '" + root() + "'"))
        << e.what_without_backtrace();
  }
}

TEST_F(CheckpointManagerTest, ConstructionCreatesNothingAndTheFirstSaveCreatesTheRoot) {
  CheckpointManager manager(root());
  EXPECT_FALSE(fs::exists(root()));
  save_and_commit(manager, 0);
  EXPECT_EQ(manager.all_steps(), Steps{0});
}

// Retention's rules are retention_test's; here, that the manager deletes what
// they say once a step is committed.
TEST_F(CheckpointManagerTest, RetentionKeepsTheNewestMaxToKeepSteps) {
  CheckpointManager manager(root(), options(/*max_to_keep=*/2));
  for (int64_t step = 1; step <= 5; ++step) {
    save_and_commit(manager, step);
  }
  manager.wait_until_finished();
  EXPECT_EQ(manager.all_steps(), (Steps{4, 5}));
  EXPECT_EQ(names_in(root()), (std::vector<std::string>{"step_4", "step_5"}));
}

TEST_F(CheckpointManagerTest, RetentionNeverDeletesTheLatestStepNorTheStepJustSaved) {
  CheckpointManager manager(root(), options(/*max_to_keep=*/1));
  save_and_commit(manager, 10);
  save_and_commit(manager, 5); // older than the latest
  manager.wait_until_finished();
  EXPECT_EQ(manager.all_steps(), (Steps{5, 10}));
  save_and_commit(manager, 11);
  manager.wait_until_finished();
  EXPECT_EQ(manager.all_steps(), Steps{11});
}

TEST_F(CheckpointManagerTest, LoadsOfTheLatestStepNeverFailWhileRetentionDeletes) {
  CheckpointManager manager(root(), options(/*max_to_keep=*/1));
  save_and_commit(manager, 0);
  std::atomic<bool> saving{true};
  std::atomic<int64_t> failures{0};
  std::thread reader([&] {
    while (saving) {
      try {
        EXPECT_GE(step_in(manager.load()), 0);
      } catch (const std::exception& e) {
        ++failures;
        ADD_FAILURE() << e.what();
      }
    }
  });
  for (int64_t step = 1; step <= 30; ++step) {
    save_and_commit(manager, step);
  }
  saving = false;
  reader.join();
  EXPECT_EQ(failures, 0);
}

// What a crash leaves: a step folder without its commit file (in mid-save,
// or half deleted, or in mid-commit), and temporary files.
void plant_crash_leftovers(const std::string& root) {
  torch_ext::write_checkpoint(root + "/step_7", 0, state_of(7));
  fs::create_directories(root + "/step_8"); // half deleted: the commit file went first
  std::ofstream(root + "/step_8/.checkpoint_0.pt.4242.3.tmp") << "partial";
  torch_ext::write_checkpoint(root + "/step_9", 0, state_of(9));
  std::ofstream(root + "/step_9/.commit_success.txt.4242.0.tmp") << "step 9\n"; // in mid-commit
  std::ofstream(root + "/step_1/.checkpoint_1.pt.4242.1.tmp") << "a stale temporary in a committed step";
  std::ofstream(root + "/.stray.4242.2.tmp") << "stale";
}

// The commit rule's cases are step_commit_test's; here, that the manager
// lists, loads and starts up by it.
TEST_F(CheckpointManagerTest, ListingSkipsCrashLeftoversAndStartUpRemovesThem) {
  {
    CheckpointManager manager(root());
    save_and_commit(manager, 1);
    save_and_commit(manager, 2);
    plant_crash_leftovers(root());
    EXPECT_EQ(manager.all_steps(), (Steps{1, 2}));
    EXPECT_EQ(manager.latest_step(), 2);
    EXPECT_THROW(manager.load(7), c10::Error);
    EXPECT_THROW(manager.load(9), c10::Error);
  }
  CheckpointManager manager(root());
  EXPECT_EQ(names_in(root()), (std::vector<std::string>{"step_1", "step_2"}));
  EXPECT_EQ(temporaries_under(root()), std::vector<std::string>{});
  EXPECT_EQ(manager.all_steps(), (Steps{1, 2}));
  expect_state(manager.load(1), 1);
  expect_state(manager.load(2), 2);
  // An uncommitted step's number is free again.
  save_and_commit(manager, 7);
  expect_state(manager.load(7), 7);
}

TEST_F(CheckpointManagerTest, AnUnwritableRootFailsTheCommitNamingTheStepAndPath) {
  std::ofstream(root_ / "file") << "a regular file, not a folder";
  const std::string bad_root = (root_ / "file" / "ckpt").string();
  CheckpointManager manager(bad_root);
  auto [staged, committed] = manager.save(3, state_of(3));
  expect_completes(staged);
  const std::string error = outcome_of(committed);
  EXPECT_TRUE(contains(error, "step 3 was not committed in '" + bad_root + "/step_3'")) << error;
  EXPECT_TRUE(contains(error, "rank 0 failed to write its file")) << error;
  EXPECT_EQ(manager.all_steps(), Steps{});
}

TEST_F(CheckpointManagerTest, AStepThatCannotBeWrittenLeavesThePreviousOneAndTheManagerWorking) {
  CheckpointManager manager(root());
  save_and_commit(manager, 1);
  std::ofstream(at("step_2")) << "a file where the step's folder goes";
  auto [staged, committed] = manager.save(2, state_of(2));
  const std::string error = outcome_of(committed);
  EXPECT_TRUE(contains(error, "step 2 was not committed in '" + at("step_2") + "'")) << error;
  EXPECT_EQ(manager.all_steps(), Steps{1});
  expect_state(manager.load(), 1);
  save_and_commit(manager, 3);
  EXPECT_EQ(manager.all_steps(), (Steps{1, 3}));
}

TEST_F(CheckpointManagerTest, AFullDiskFailsTheCommitAndLeavesThePreviousStepLoadable) {
  // Whole, and in waves (the writer fails while the stager waits for it).
  for (const int64_t budget : {int64_t{0}, torch_ext::SaveOptions::kMinStagingBytes}) {
    SCOPED_TRACE("max_staging_bytes " + std::to_string(budget));
    CheckpointManagerOptions with_budget;
    with_budget.max_staging_bytes = budget;
    CheckpointManager manager(root(), with_budget);
    save_and_commit(manager, 1);
    GenericDict large = state_of(2);
    large.insert("big", torch::zeros({1 << 20}));
    std::string error;
    {
      FileSizeLimit limit(256 << 10);
      auto [staged, committed] = manager.save(2, large);
      error = outcome_of(committed);
    }
    EXPECT_TRUE(contains(error, "step 2 was not committed in '" + at("step_2") + "'")) << error;
    EXPECT_TRUE(contains(error, "rank 0 failed to write its file")) << error;
    EXPECT_EQ(manager.all_steps(), Steps{1});
    expect_state(manager.load(), 1);
    // The failed step's folder is gone, and with it any temporary file.
    EXPECT_FALSE(fs::exists(at("step_2")));
    EXPECT_EQ(temporaries_under(root()), std::vector<std::string>{});
    auto [staged, committed] = manager.save(2, large);
    expect_completes(committed);
    EXPECT_EQ(manager.all_steps(), (Steps{1, 2}));
    manager.close();
    fs::remove_all(root());
  }
}

// max_staging_bytes, shared with AsyncCheckpointer: a state dict larger than
// the budget is staged and written in waves, into the same file.
TEST_F(CheckpointManagerTest, ASaveLargerThanTheStagingBudgetCommitsTheSameFileInWaves) {
  CheckpointManagerOptions budget;
  budget.max_staging_bytes = torch_ext::SaveOptions::kMinStagingBytes;
  CheckpointManager manager(root(), budget);
  GenericDict large = state_of(1);
  large.insert("big", torch::arange(1 << 20, torch::kFloat32)); // 4 MiB: waves of 512 KiB
  save_and_commit(manager, 1);
  auto [staged, committed] = manager.save(2, large);
  expect_completes(committed);
  const GenericDict loaded = manager.load(2).toGenericDict();
  EXPECT_TRUE(torch::equal(loaded.at("big").toTensor(), large.at("big").toTensor()));
  // The same file as without a budget (whose record names start with the file's stem).
  const fs::path whole = root_ / "unbounded" / "checkpoint_0.pt";
  fs::create_directories(whole.parent_path());
  torch_ext::write_checkpoint_file(whole.string(), large);
  EXPECT_EQ(fs::file_size(at("step_2/checkpoint_0.pt")), fs::file_size(whole));
}

TEST_F(CheckpointManagerTest, AValueThatCannotBeSavedFailsBothFuturesAndTheNextSaveWorks) {
  CheckpointManager manager(root());
  GenericDict state = state_of(1);
  state.insert("bad", c10::IValue(c10::complex<double>(1, 2)));
  auto [staged, committed] = manager.save(1, state);
  EXPECT_TRUE(contains(outcome_of(staged), "'bad'")) << outcome_of(staged);
  const std::string error = outcome_of(committed);
  EXPECT_TRUE(contains(error, "step 1 was not committed")) << error;
  EXPECT_TRUE(contains(error, "rank 0 failed to stage its state dict")) << error;
  save_and_commit(manager, 1);
}

TEST_F(CheckpointManagerTest, AStateDictThatIsNotADictThrowsATypeError) {
  CheckpointManager manager(root());
  EXPECT_THROW(manager.save(1, c10::IValue(int64_t{3})), c10::TypeError);
  save_and_commit(manager, 1);
}

TEST_F(CheckpointManagerTest, OptionsOutOfBoundsThrowNamingThem) {
  auto error_of = [&](CheckpointManagerOptions options) -> std::string {
    try {
      CheckpointManager manager(root(), std::move(options));
    } catch (const c10::ValueError& e) {
      return e.what_without_backtrace();
    }
    return "";
  };
  EXPECT_TRUE(contains(error_of(options(0)), "max_to_keep >= 1")) << error_of(options(0));
  EXPECT_TRUE(contains(error_of(options(2, 0)), "keep_every_n_steps >= 1"));
  CheckpointManagerOptions bad_rank;
  bad_rank.rank = 1;
  EXPECT_TRUE(contains(error_of(bad_rank), "0 <= rank < world_size"));
  CheckpointManagerOptions no_store;
  no_store.world_size = 2;
  EXPECT_TRUE(contains(error_of(no_store), "expected a c10d store for world_size 2"));
  CheckpointManagerOptions bad_timeout;
  bad_timeout.barrier_timeout = std::chrono::milliseconds(0);
  EXPECT_TRUE(contains(error_of(bad_timeout), "barrier_timeout > 0"));
  CheckpointManagerOptions bad_threads;
  bad_threads.staging_threads = 0;
  EXPECT_TRUE(contains(error_of(bad_threads), "CheckpointManager expected 1 <= staging_threads <= 1024"));
  CheckpointManagerOptions small_budget;
  small_budget.max_staging_bytes = 1000;
  EXPECT_TRUE(contains(error_of(small_budget), "CheckpointManager expected max_staging_bytes to be 0 (no bound) or at least"));
  CheckpointManagerOptions bad_nice;
  bad_nice.writer_nice = 20;
  EXPECT_TRUE(contains(error_of(bad_nice), "CheckpointManager expected 0 <= writer_nice <= 19"));
  try {
    CheckpointManager manager("");
    FAIL() << "an empty root did not throw";
  } catch (const c10::ValueError& e) {
    EXPECT_TRUE(contains(e.what_without_backtrace(), "root folder"));
  }
}

TEST_F(CheckpointManagerTest, SavesAfterCloseThrowAndStepsStayReadable) {
  CheckpointManager manager(root());
  auto [staged, committed] = manager.save(1, state_of(1));
  manager.close(); // waits for the pending save
  EXPECT_TRUE(committed->completed() && !committed->hasError());
  EXPECT_THROW(manager.save(2, state_of(2)), c10::Error);
  expect_state(manager.load(), 1);
}

// Ranks as threads of one process, sharing a c10d HashStore, as the ranks of
// a job share its TCPStore.
class Ranks {
 public:
  Ranks(const std::string& root, int64_t world_size, std::chrono::milliseconds timeout = std::chrono::seconds(60))
      : store_(c10::make_intrusive<c10d::HashStore>()) {
    std::vector<std::future<std::unique_ptr<CheckpointManager>>> made;
    for (int64_t rank = 0; rank < world_size; ++rank) {
      made.push_back(std::async(std::launch::async, [&, rank] {
        return std::make_unique<CheckpointManager>(root, rank_options(rank, world_size, store_, timeout));
      }));
    }
    for (auto& manager : made) {
      managers_.push_back(manager.get());
    }
  }

  CheckpointManager& operator[](int64_t rank) {
    return *managers_[rank];
  }
  int64_t size() const {
    return static_cast<int64_t>(managers_.size());
  }

  // Every rank saves `step` (rank `failing`'s state dict cannot be saved);
  // returns each rank's commit outcome.
  std::vector<std::string> save(int64_t step, std::optional<int64_t> failing = std::nullopt) {
    std::vector<FuturePtr> committed;
    for (int64_t rank = 0; rank < size(); ++rank) {
      GenericDict state = state_of(step, rank);
      if (rank == failing) {
        state.insert("bad", c10::IValue(c10::complex<double>(1, 2)));
      }
      committed.push_back(managers_[rank]->save(step, state).second);
    }
    std::vector<std::string> outcomes;
    for (const FuturePtr& future : committed) {
      outcomes.push_back(outcome_of(future));
    }
    return outcomes;
  }

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  std::vector<std::unique_ptr<CheckpointManager>> managers_;
};

TEST_F(CheckpointManagerTest, RanksCommitAStepOnceEveryRankHasWrittenItsFile) {
  Ranks ranks(root(), 3);
  for (int64_t step = 1; step <= 2; ++step) {
    EXPECT_EQ(ranks.save(step), std::vector<std::string>(3, ""));
  }
  EXPECT_EQ(
      names_in(at("step_2")),
      (std::vector<std::string>{"checkpoint_0.pt", "checkpoint_1.pt", "checkpoint_2.pt", "commit_success.txt"}));
  for (int64_t rank = 0; rank < 3; ++rank) {
    EXPECT_EQ(ranks[rank].all_steps(), (Steps{1, 2}));
    expect_state(ranks[rank].load(), 2, rank);
  }
}

TEST_F(CheckpointManagerTest, OneRankFailingFailsEveryRanksCommitNamingItAndTheNextSaveWorks) {
  Ranks ranks(root(), 3);
  EXPECT_EQ(ranks.save(1), std::vector<std::string>(3, ""));
  const std::vector<std::string> outcomes = ranks.save(2, /*failing=*/1);
  for (const std::string& outcome : outcomes) {
    EXPECT_TRUE(contains(outcome, "step 2 was not committed in '" + at("step_2") + "'")) << outcome;
    EXPECT_TRUE(contains(outcome, "rank 1 failed to stage its state dict")) << outcome;
  }
  EXPECT_EQ(ranks[0].all_steps(), Steps{1});
  EXPECT_FALSE(fs::exists(at("step_2"))); // the other ranks' files went with it
  EXPECT_EQ(ranks.save(2), std::vector<std::string>(3, ""));
  EXPECT_EQ(ranks[2].all_steps(), (Steps{1, 2}));
  expect_state(ranks[1].load(2), 2, 1);
}

TEST_F(CheckpointManagerTest, ARankThatCannotWriteItsFileFailsEveryRanksCommit) {
  Ranks ranks(root(), 2);
  fs::create_directories(at("step_4/checkpoint_1.pt")); // a folder where rank 1's file goes
  const std::vector<std::string> outcomes = ranks.save(4);
  for (const std::string& outcome : outcomes) {
    EXPECT_TRUE(contains(outcome, "step 4 was not committed")) << outcome;
    EXPECT_TRUE(contains(outcome, "rank 1 failed to write its file")) << outcome;
  }
  EXPECT_EQ(ranks[0].all_steps(), Steps{});
  EXPECT_EQ(ranks.save(4), std::vector<std::string>(2, ""));
}

TEST_F(CheckpointManagerTest, NoRankStartsBeforeRankZerosCleanUp) {
  plant_crash_leftovers(root());
  auto store = c10::make_intrusive<c10d::HashStore>();
  // Rank 1 first: its constructor returns only after rank 0's clean-up.
  auto follower = std::async(std::launch::async, [&] {
    auto manager = std::make_unique<CheckpointManager>(root(), rank_options(1, 2, store));
    EXPECT_FALSE(fs::exists(at("step_7")));
    EXPECT_EQ(temporaries_under(root()), std::vector<std::string>{});
    return manager;
  });
  CheckpointManager leader(root(), rank_options(0, 2, store));
  ASSERT_EQ(follower.wait_for(kWaitLimit), std::future_status::ready);
  follower.get();
}

TEST_F(CheckpointManagerTest, ARankWithoutRankZeroThrowsAfterTheTimeout) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  try {
    CheckpointManager manager(root(), rank_options(1, 2, store, std::chrono::milliseconds(100)));
    FAIL() << "rank 1 started without rank 0";
  } catch (const c10::Error& e) {
    EXPECT_TRUE(contains(e.what_without_backtrace(), "for rank 0 to clean up '" + root() + "'"))
        << e.what_without_backtrace();
  }
}

} // namespace
