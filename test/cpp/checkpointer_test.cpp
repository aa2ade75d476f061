#include <torch_ext/checkpoint_file.h>
#include <torch_ext/checkpointer.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "torch_ext/csrc/async_save/staging_copy.h"

#include "test_files.h"

namespace {

using torch_ext_test::FileSizeLimit;

namespace fs = std::filesystem;
using c10::impl::GenericDict;
using c10::impl::GenericList;

class CheckpointerTest : public torch_ext_test::TempFolderTest {
 protected:
  std::string folder(const std::string& name) const {
    return path(name);
  }
};

torch_ext::AsyncCheckpointerOptions options(
    int64_t rank,
    int64_t world_size,
    int staging_threads = 1,
    std::shared_ptr<torch_ext::Barrier> barrier = nullptr) {
  torch_ext::AsyncCheckpointerOptions options;
  options.rank = rank;
  options.world_size = world_size;
  options.staging_threads = staging_threads;
  options.barrier = std::move(barrier);
  return options;
}

torch_ext::AsyncCheckpointerOptions budget(int64_t max_staging_bytes, int staging_threads = 1) {
  torch_ext::AsyncCheckpointerOptions options;
  options.max_staging_bytes = max_staging_bytes;
  options.staging_threads = staging_threads;
  return options;
}

GenericDict make_dict() {
  return GenericDict(c10::StringType::get(), c10::AnyType::get());
}

// Every kind of entry the checkpointer accepts, nested.
GenericDict sample_state_dict() {
  GenericDict model = make_dict();
  model.insert("weight", torch::randn({4, 3}).to(torch::kBFloat16));
  model.insert("steps", torch::arange(5, torch::kInt64));
  GenericList buffers(c10::AnyType::get());
  buffers.push_back(torch::randn({2}));
  buffers.push_back(torch::randn({3, 2}).t()); // not contiguous
  GenericDict state = make_dict();
  state.insert("model", model);
  state.insert("buffers", buffers);
  state.insert("epoch", int64_t{7});
  state.insert("lr", 0.125);
  state.insert("nesterov", true);
  state.insert("name", std::string("mlp"));
  state.insert("scheduler", c10::IValue());
  return state;
}

// Equal values, tensors bitwise with the same dtype and shape.
void expect_equal(const c10::IValue& expected, const c10::IValue& actual) {
  if (expected.isTensor()) {
    ASSERT_TRUE(actual.isTensor()) << actual.tagKind();
    const at::Tensor& e = expected.toTensor();
    const at::Tensor& a = actual.toTensor();
    EXPECT_EQ(e.dtype(), a.dtype());
    EXPECT_EQ(e.sizes(), a.sizes());
    EXPECT_TRUE(torch::equal(e, a));
  } else if (expected.isGenericDict()) {
    ASSERT_TRUE(actual.isGenericDict()) << actual.tagKind();
    const GenericDict e = expected.toGenericDict();
    const GenericDict a = actual.toGenericDict();
    ASSERT_EQ(e.size(), a.size());
    for (const auto& entry : e) {
      ASSERT_TRUE(a.contains(entry.key())) << entry.key().toStringRef();
      expect_equal(entry.value(), a.at(entry.key()));
    }
  } else if (expected.isList()) {
    ASSERT_TRUE(actual.isList()) << actual.tagKind();
    ASSERT_EQ(expected.toList().size(), actual.toList().size());
    for (size_t i = 0; i < expected.toList().size(); ++i) {
      expect_equal(expected.toList().get(i), actual.toList().get(i));
    }
  } else {
    EXPECT_EQ(expected.tagKind(), actual.tagKind());
    EXPECT_EQ(expected, actual);
  }
}

std::string error_of(const torch_ext::FuturePtr& future) {
  future->wait();
  return future->hasError() ? future->tryRetrieveErrorMessage() : "";
}

std::vector<std::string> files_in(const std::string& path) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(path)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

TEST_F(CheckpointerTest, SavedStateDictLoadsBackEqual) {
  torch_ext::AsyncCheckpointer checkpointer;
  GenericDict state = sample_state_dict();
  auto [staged, written] = checkpointer.save(folder("step_1"), state);
  written->waitAndThrow();
  EXPECT_TRUE(staged->completed());
  EXPECT_TRUE(staged->value().isNone());
  EXPECT_TRUE(written->value().isNone());
  expect_equal(state, checkpointer.load(folder("step_1")));
  EXPECT_EQ(files_in(folder("step_1")), std::vector<std::string>{"checkpoint_0.pt"});
}

TEST_F(CheckpointerTest, TensorsMayChangeOnceStagedWithoutChangingTheCheckpoint) {
  torch_ext::AsyncCheckpointer checkpointer;
  at::Tensor weight = torch::ones({256, 1024});
  GenericDict state = make_dict();
  state.insert("weight", weight);
  auto [staged, written] = checkpointer.save(folder("a"), state);
  staged->waitAndThrow();
  weight.fill_(2); // may race with the write, not with staging
  written->waitAndThrow();
  at::Tensor loaded = checkpointer.load(folder("a")).toGenericDict().at("weight").toTensor();
  EXPECT_TRUE(torch::equal(loaded, torch::ones({256, 1024})));
}

TEST_F(CheckpointerTest, ConsecutiveSavesOfTheSameTensorsKeepTheirOwnValues) {
  torch_ext::AsyncCheckpointer checkpointer;
  at::Tensor weight = torch::zeros({1 << 16});
  GenericDict state = make_dict();
  state.insert("weight", weight);
  for (int step = 1; step <= 3; ++step) {
    weight.fill_(step);
    auto [staged, written] = checkpointer.save(folder(std::to_string(step)), state);
    staged->waitAndThrow();
  }
  checkpointer.close();
  for (int step = 1; step <= 3; ++step) {
    at::Tensor loaded = checkpointer.load(folder(std::to_string(step))).toGenericDict().at("weight").toTensor();
    EXPECT_TRUE(torch::equal(loaded, torch::full({1 << 16}, float(step)))) << step;
  }
}

// The pieces of one storage that staging copies, and the threads that copy
// them, seen through the copy engine's test seam. A piece waits (up to a
// deadline) until a second thread has copied one too, so that no thread
// takes every piece before the others start.
class PieceWatch {
 public:
  struct Piece {
    std::thread::id thread;
    uint64_t offset;
    uint64_t size;
  };

  explicit PieceWatch(const c10::Storage& storage) {
    std::lock_guard<std::mutex> lock(mutex_);
    storage_ = storage.unsafeGetStorageImpl();
    pieces_.clear();
    waited_out_ = false;
    torch_ext::detail::observe_copies_for_testing(&PieceWatch::observe);
  }
  ~PieceWatch() {
    torch_ext::detail::observe_copies_for_testing(nullptr);
  }

  // By offset.
  std::vector<Piece> pieces() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<Piece> pieces = pieces_;
    std::sort(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) { return a.offset < b.offset; });
    return pieces;
  }
  size_t threads() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return threads_locked();
  }

 private:
  static size_t threads_locked() {
    std::vector<std::thread::id> threads;
    for (const Piece& piece : pieces_) {
      if (std::find(threads.begin(), threads.end(), piece.thread) == threads.end()) {
        threads.push_back(piece.thread);
      }
    }
    return threads.size();
  }

  static void observe(const c10::StorageImpl* source, uint64_t offset, uint64_t size) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (source != storage_) {
      return;
    }
    pieces_.push_back({std::this_thread::get_id(), offset, size});
    changed_.notify_all();
    if (!waited_out_) {
      waited_out_ = !changed_.wait_for(lock, std::chrono::seconds(20), [] { return threads_locked() >= 2; });
    }
  }

  static inline std::mutex mutex_;
  static inline std::condition_variable changed_;
  static inline const c10::StorageImpl* storage_ = nullptr;
  static inline std::vector<Piece> pieces_;
  static inline bool waited_out_ = false; // then the others need not wait
};

TEST_F(CheckpointerTest, StagingThreadsSplitLargeTensorsIntoPieces) {
  torch_ext::AsyncCheckpointer checkpointer(options(0, 1, /*staging_threads=*/3));
  GenericDict state = make_dict();
  // 40 MiB: three 16 MiB pieces, the last one partial.
  const at::Tensor big = torch::arange(10 << 20, torch::kInt32);
  state.insert("big", big);
  state.insert("view", torch::arange(100, torch::kFloat32).narrow(0, 10, 50));
  const PieceWatch watch(big.storage());
  auto [staged, written] = checkpointer.save(folder("a"), state);
  written->waitAndThrow();

  constexpr uint64_t kMiB = uint64_t{1} << 20;
  const std::vector<PieceWatch::Piece> pieces = watch.pieces();
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[0].offset, 0u);
  EXPECT_EQ(pieces[1].offset, 16 * kMiB);
  EXPECT_EQ(pieces[2].offset, 32 * kMiB);
  EXPECT_EQ(pieces[2].size, 8 * kMiB);
  EXPECT_GE(watch.threads(), 2u) << "one thread copied every piece of the large tensor";
  expect_equal(state, checkpointer.load(folder("a")));
}

TEST_F(CheckpointerTest, SaveReplacesThePreviousCheckpointInTheSameFolder) {
  torch_ext::AsyncCheckpointer checkpointer;
  GenericDict first = make_dict();
  first.insert("step", int64_t{1});
  GenericDict second = make_dict();
  second.insert("step", int64_t{2});
  checkpointer.save(folder("latest"), first);
  auto [staged, written] = checkpointer.save(folder("latest"), second);
  written->waitAndThrow();
  expect_equal(second, checkpointer.load(folder("latest")));
  EXPECT_EQ(files_in(folder("latest")), std::vector<std::string>{"checkpoint_0.pt"});
}

TEST_F(CheckpointerTest, UnsupportedValueFailsBothFuturesNamingItsKey) {
  torch_ext::AsyncCheckpointer checkpointer;
  GenericDict model = make_dict();
  model.insert("bad", c10::IValue(c10::complex<double>(1, 2)));
  GenericDict state = make_dict();
  state.insert("model", model);
  auto [staged, written] = checkpointer.save(folder("a"), state);
  EXPECT_NE(error_of(staged).find("state_dict entry 'model.bad' is a ComplexDouble"), std::string::npos)
      << error_of(staged);
  EXPECT_EQ(error_of(staged), error_of(written));
  EXPECT_FALSE(fs::exists(folder("a")));
}

TEST_F(CheckpointerTest, UnwritablePathFailsTheWriteNamingItAndLaterSavesWork) {
  torch_ext::AsyncCheckpointer checkpointer;
  std::ofstream(folder("file")) << "a regular file, not a folder";
  const std::string bad = folder("file") + "/step_1";
  auto [staged, written] = checkpointer.save(bad, sample_state_dict());
  staged->waitAndThrow();
  const std::string error = error_of(written);
  EXPECT_NE(error.find("'" + bad + "'"), std::string::npos) << error;

  // The next save surfaces that error once, as upstream's does, then saves.
  GenericDict state = sample_state_dict();
  EXPECT_THROW(checkpointer.save(folder("good"), state), c10::Error);
  auto [staged2, written2] = checkpointer.save(folder("good"), state);
  written2->waitAndThrow();
  expect_equal(state, checkpointer.load(folder("good")));
}

TEST_F(CheckpointerTest, FailedWriteLeavesThePreviousCheckpointLoadable) {
  torch_ext::AsyncCheckpointer checkpointer;
  GenericDict small = make_dict();
  small.insert("weight", torch::randn({1024}));
  checkpointer.save(folder("latest"), small).second->waitAndThrow();

  GenericDict large = make_dict();
  large.insert("weight", torch::randn({1 << 20}));
  std::string error;
  {
    FileSizeLimit limit(256 << 10);
    auto [staged, written] = checkpointer.save(folder("latest"), large);
    error = error_of(written);
  }
  EXPECT_NE(error.find("writing '" + folder("latest") + "/checkpoint_0.pt' failed: File too large"),
            std::string::npos)
      << error;
  expect_equal(small, checkpointer.load(folder("latest")));
  EXPECT_EQ(files_in(folder("latest")), std::vector<std::string>{"checkpoint_0.pt"});
}

TEST_F(CheckpointerTest, CloseWaitsForThePendingWriteAndRefusesLaterSaves) {
  torch_ext::AsyncCheckpointer checkpointer;
  GenericDict state = make_dict();
  state.insert("weight", torch::randn({1 << 20}));
  auto [staged, written] = checkpointer.save(folder("a"), state);
  checkpointer.close();
  EXPECT_TRUE(written->completed());
  EXPECT_FALSE(written->hasError());
  EXPECT_THROW(checkpointer.save(folder("b"), state), c10::Error);
  expect_equal(state, checkpointer.load(folder("a")));
}

TEST_F(CheckpointerTest, DestructorFinishesThePendingWrite) {
  GenericDict state = sample_state_dict();
  torch_ext::FuturePtr written;
  {
    torch_ext::AsyncCheckpointer checkpointer;
    written = checkpointer.save(folder("a"), state).second;
  }
  EXPECT_TRUE(written->completed());
  expect_equal(state, torch_ext::read_checkpoint(folder("a"), 0));
}

TEST_F(CheckpointerTest, EachRankWritesItsOwnFile) {
  torch_ext::AsyncCheckpointer checkpointer(options(1, 2));
  GenericDict state = sample_state_dict();
  checkpointer.save(folder("a"), state).second->waitAndThrow();
  EXPECT_EQ(files_in(folder("a")), std::vector<std::string>{"checkpoint_1.pt"});
  expect_equal(state, checkpointer.load(folder("a")));
}

TEST_F(CheckpointerTest, BarrierRunsAfterTheFileIsWritten) {
  struct CountingBarrier : torch_ext::Barrier {
    void execute_barrier() override {
      file_existed = fs::exists(path);
      ++calls;
    }
    std::string path;
    bool file_existed = false;
    std::atomic<int> calls{0};
  };
  auto barrier = std::make_shared<CountingBarrier>();
  barrier->path = folder("a") + "/checkpoint_0.pt";
  torch_ext::AsyncCheckpointer checkpointer(options(0, 1, 1, barrier));
  checkpointer.save(folder("a"), sample_state_dict()).second->waitAndThrow();
  EXPECT_EQ(barrier->calls, 1);
  EXPECT_TRUE(barrier->file_existed);
}

TEST_F(CheckpointerTest, BarrierFailureFailsTheWrite) {
  struct FailingBarrier : torch_ext::Barrier {
    void execute_barrier() override {
      TORCH_CHECK(false, "rank 1 never arrived");
    }
  };
  torch_ext::AsyncCheckpointer checkpointer(
      options(0, 1, 1, std::make_shared<FailingBarrier>()));
  auto [staged, written] = checkpointer.save(folder("a"), sample_state_dict());
  EXPECT_NE(error_of(written).find("rank 1 never arrived"), std::string::npos);
}

TEST_F(CheckpointerTest, LoadOfAMissingCheckpointNamesTheFile) {
  torch_ext::AsyncCheckpointer checkpointer;
  try {
    checkpointer.load(folder("nothing"));
    FAIL() << "load of a missing checkpoint returned";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find(folder("nothing") + "/checkpoint_0.pt"), std::string::npos);
  }
}

TEST(CheckpointerOptionsTest, RejectsARankOutsideTheWorld) {
  EXPECT_THROW(torch_ext::AsyncCheckpointer(options(2, 2)), c10::ValueError);
  EXPECT_THROW(torch_ext::AsyncCheckpointer(options(0, 1, 0)), c10::ValueError);
}

TEST(CheckpointerOptionsTest, RejectsAWriterNiceOutsideZeroToNineteen) {
  for (const int64_t nice : {int64_t{-1}, int64_t{20}}) {
    torch_ext::AsyncCheckpointerOptions options;
    options.writer_nice = nice;
    EXPECT_THROW(torch_ext::AsyncCheckpointer{options}, c10::ValueError) << nice;
  }
}

TEST_F(CheckpointerTest, TheWriterThreadRunsAtWriterNice) {
  // The barrier runs on the writer thread.
  struct NiceBarrier : torch_ext::Barrier {
    void execute_barrier() override {
      nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)));
    }
    int nice = -100;
  };
  const int base = ::getpriority(PRIO_PROCESS, 0); // the process's, if the tests run niced
  for (const int64_t nice : {int64_t{0}, int64_t{10}, int64_t{19}}) {
    auto barrier = std::make_shared<NiceBarrier>();
    torch_ext::AsyncCheckpointerOptions options;
    options.writer_nice = nice;
    options.barrier = barrier;
    torch_ext::AsyncCheckpointer checkpointer(options);
    checkpointer.save(folder(std::to_string(nice)), sample_state_dict()).second->waitAndThrow();
    EXPECT_EQ(barrier->nice, std::max(base, static_cast<int>(nice)));
  }
}

TEST(CheckpointerOptionsTest, RejectsAStagingBudgetBelowTheLeast) {
  try {
    torch_ext::AsyncCheckpointer checkpointer(budget(torch_ext::AsyncCheckpointerOptions::kMinStagingBytes - 1));
    FAIL() << "a budget below kMinStagingBytes was accepted";
  } catch (const c10::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("max_staging_bytes to be 0 (no bound) or at least 1048576"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(torch_ext::AsyncCheckpointer(budget(-1)), c10::ValueError);
  torch_ext::AsyncCheckpointer(budget(torch_ext::AsyncCheckpointerOptions::kMinStagingBytes));
}

std::string bytes_of_file(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Storages larger than a wave and smaller, shared, viewed, empty, of several
// dtypes: record boundaries fall anywhere in a wave.
GenericDict wave_state_dict() {
  GenericDict state = make_dict();
  const at::Tensor big = torch::randn({3 << 20}); // 12 MiB
  state.insert("big", big);
  state.insert("big_slice", big.narrow(0, 100, 1000)); // shares big's storage
  state.insert("empty", torch::empty({0}));
  GenericList layers(c10::AnyType::get());
  for (int i = 0; i < 40; ++i) {
    layers.push_back(torch::randn({1000 + 37 * i}));
  }
  state.insert("layers", layers);
  state.insert("half", torch::randn({1 << 20}).to(torch::kBFloat16));
  state.insert("transposed", torch::randn({300, 200}).t());
  state.insert("steps", torch::arange(5, torch::kInt16));
  state.insert("epoch", int64_t{3});
  return state;
}

TEST_F(CheckpointerTest, SavesInWavesWriteTheSameBytesAsAWholeSave) {
  GenericDict state = wave_state_dict();
  const at::Tensor big = state.at("big").toTensor();
  const int64_t least = torch_ext::AsyncCheckpointerOptions::kMinStagingBytes;
  // Many waves, waves that split records at odd places, one wave for all.
  for (const int64_t max_staging_bytes : {least, 3 * least + 4242, int64_t{64} << 20}) {
    torch_ext::AsyncCheckpointer checkpointer(budget(max_staging_bytes, /*staging_threads=*/2));
    // Twice: the second save reuses the buffers of the first.
    for (int round = 0; round < 2; ++round) {
      big.add_(1);
      const std::string name = std::to_string(max_staging_bytes) + "_" + std::to_string(round);
      torch_ext::write_checkpoint(folder("whole_" + name), 0, state);
      checkpointer.save(folder("waves_" + name), state).second->waitAndThrow();
      const std::string whole = bytes_of_file(folder("whole_" + name) + "/checkpoint_0.pt");
      ASSERT_GT(whole.size(), size_t{14} << 20);
      EXPECT_TRUE(whole == bytes_of_file(folder("waves_" + name) + "/checkpoint_0.pt"))
          << "budget " << max_staging_bytes << ", save " << round;
    }
  }
}

TEST_F(CheckpointerTest, InWavesTensorsMayChangeOnceStagedWithoutChangingTheCheckpoint) {
  torch_ext::AsyncCheckpointer checkpointer(budget(torch_ext::AsyncCheckpointerOptions::kMinStagingBytes));
  at::Tensor weight = torch::ones({4 << 20}); // 16 MiB: 32 waves
  GenericDict state = make_dict();
  state.insert("weight", weight);
  auto [staged, written] = checkpointer.save(folder("a"), state);
  staged->waitAndThrow();
  weight.fill_(2);
  written->waitAndThrow();
  at::Tensor loaded = checkpointer.load(folder("a")).toGenericDict().at("weight").toTensor();
  EXPECT_TRUE(torch::equal(loaded, torch::ones({4 << 20})));
}

TEST_F(CheckpointerTest, InWavesAFailedWriteFailsStagingTooAndLaterSavesWork) {
  torch_ext::AsyncCheckpointer checkpointer(budget(torch_ext::AsyncCheckpointerOptions::kMinStagingBytes));
  std::ofstream(folder("file")) << "a regular file, not a folder";
  const std::string bad = folder("file") + "/step_1";
  GenericDict state = make_dict();
  state.insert("weight", torch::randn({4 << 20})); // more waves than buffers
  auto [staged, written] = checkpointer.save(bad, state);
  const std::string error = error_of(written);
  EXPECT_NE(error.find("'" + bad + "'"), std::string::npos) << error;
  EXPECT_EQ(error_of(staged), error);

  EXPECT_THROW(checkpointer.save(folder("good"), state), c10::Error);
  checkpointer.save(folder("good"), state).second->waitAndThrow();
  expect_equal(state, checkpointer.load(folder("good")));
}

TEST_F(CheckpointerTest, InWavesAnUnsupportedValueFailsBothFuturesNamingItsKeyAndWritesNothing) {
  torch_ext::AsyncCheckpointer checkpointer(budget(torch_ext::AsyncCheckpointerOptions::kMinStagingBytes));
  GenericDict state = make_dict();
  state.insert("weight", torch::randn({4 << 20}));
  state.insert("bad", c10::IValue(c10::complex<double>(1, 2)));
  auto [staged, written] = checkpointer.save(folder("a"), state);
  EXPECT_NE(error_of(staged).find("state_dict entry 'bad' is a ComplexDouble"), std::string::npos) << error_of(staged);
  EXPECT_EQ(error_of(staged), error_of(written));
  EXPECT_FALSE(fs::exists(folder("a")));
}

} // namespace
