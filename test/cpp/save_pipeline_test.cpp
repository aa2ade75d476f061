#include "torch_ext/csrc/async_save/save_pipeline.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_files.h"

namespace {

namespace fs = std::filesystem;
using namespace torch_ext::detail;
using torch_ext::SaveOptions;
using c10::impl::GenericDict;

// A format of the test's own, shaped as DCP's is: each rank writes two data
// files, its tensors dealt between them (file 0's first, so the plan's order
// is not the state dict's), only the bytes each tensor views (not the whole
// storage), and reports where each landed. It proves that a format plugs
// into the pipeline through CheckpointFormat alone.
class TwoFileFormat final : public CheckpointFormat {
 public:
  struct Item {
    std::string key;
    size_t file;
    uint64_t offset; // in its file
  };

  std::unique_ptr<WritePlan> plan(const std::string& folder, int64_t rank, const c10::IValue& state) const override {
    std::vector<Item> items;
    std::vector<StorageSlice> slices[2];
    uint64_t sizes[2] = {0, 0};
    size_t index = 0;
    for (const auto& entry : state.toGenericDict()) {
      const at::Tensor tensor = entry.value().toTensor();
      TORCH_CHECK(tensor.is_contiguous(), "TwoFileFormat takes contiguous tensors");
      // Planned before anything is copied: the storages have no data yet.
      TORCH_CHECK(tensor.storage().data() == nullptr, "TwoFileFormat planned over a storage with data");
      const size_t file = index++ % 2;
      const uint64_t offset = tensor.storage_offset() * tensor.element_size();
      slices[file].push_back({tensor.storage(), offset, tensor.nbytes()});
      items.push_back({entry.key().toStringRef(), file, sizes[file]});
      sizes[file] += tensor.nbytes();
    }
    slices[0].insert(slices[0].end(), slices[1].begin(), slices[1].end());
    const std::string prefix = (fs::path(folder) / ("r" + std::to_string(rank) + "_")).string();
    return std::make_unique<Plan>(std::move(slices[0]), prefix, std::move(items), sizes[0]);
  }

 private:
  class Sink final : public WriteSink {
   public:
    Sink(const std::string& prefix, RankWriteResult result, uint64_t first_file_bytes)
        : files_{std::ofstream(prefix + "0.bin", std::ios::binary), std::ofstream(prefix + "1.bin", std::ios::binary)},
          result_(std::move(result)),
          first_left_(first_file_bytes) {
      TORCH_CHECK(files_[0] && files_[1], "cannot create '", prefix, "*.bin'");
    }
    void append(const void* data, size_t size) override {
      const auto* bytes = static_cast<const char*>(data);
      const auto first = static_cast<size_t>(std::min<uint64_t>(size, first_left_));
      files_[0].write(bytes, static_cast<std::streamsize>(first));
      files_[1].write(bytes + first, static_cast<std::streamsize>(size - first));
      first_left_ -= first;
    }
    RankWriteResult commit() override {
      for (std::ofstream& file : files_) {
        file.close();
        TORCH_CHECK(file, "a write of TwoFileFormat failed");
      }
      return result_;
    }

   private:
    std::ofstream files_[2];
    RankWriteResult result_;
    uint64_t first_left_;
  };

  class Plan final : public WritePlan {
   public:
    Plan(std::vector<StorageSlice> slices, std::string prefix, std::vector<Item> items, uint64_t first_file_bytes)
        : WritePlan(std::move(slices)),
          prefix_(std::move(prefix)),
          items_(std::move(items)),
          first_file_bytes_(first_file_bytes) {}
    std::unique_ptr<WriteSink> open() const override {
      fs::create_directories(fs::path(prefix_).parent_path());
      std::ostringstream result;
      for (const Item& item : items_) {
        result << item.key << " " << item.file << " " << item.offset << ";";
      }
      return std::make_unique<Sink>(prefix_, result.str(), first_file_bytes_);
    }

   private:
    std::string prefix_;
    std::vector<Item> items_;
    uint64_t first_file_bytes_;
  };
};

class SavePipelineTest : public torch_ext_test::TempFolderTest {
 protected:
  std::string folder(const std::string& name) const {
    return path(name);
  }
};

struct Outcome {
  std::string error; // empty if none
  SavePhase failed;
  RankWriteResult result;
};

// Saves through `pipeline` and waits (bounded) for the writer's finish.
Outcome save(SavePipeline& pipeline, const std::string& folder, int64_t rank, const GenericDict& state) {
  auto staged = c10::make_intrusive<c10::ivalue::Future>(c10::NoneType::get());
  auto finished = std::make_shared<std::promise<Outcome>>();
  std::future<Outcome> outcome = finished->get_future();
  pipeline.save(folder, rank, state, staged, [finished](std::exception_ptr error, SavePhase failed, RankWriteResult result) {
    std::string message;
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        message = e.what();
      }
    }
    finished->set_value({message, failed, std::move(result)});
  });
  EXPECT_EQ(outcome.wait_for(std::chrono::seconds(120)), std::future_status::ready) << "the save did not finish";
  return outcome.get();
}

std::string bytes_of(const at::Tensor& tensor) {
  return {static_cast<const char*>(tensor.const_data_ptr()), tensor.nbytes()};
}

std::string read(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

GenericDict pipeline_state() {
  GenericDict state(c10::StringType::get(), c10::AnyType::get());
  state.insert("a", torch::arange(3 << 20, torch::kInt32)); // 12 MiB: pieces, and waves across it
  state.insert("b", torch::randn({1000}));
  // Part of a storage of 40 KB: only its 4 KB are taken.
  state.insert("c", torch::randn({10000}).narrow(0, 5000, 1000));
  state.insert("empty", torch::empty({0}));
  state.insert("d", torch::arange(7, torch::kInt64));
  return state;
}

// Bytes compared without printing them: gtest's diff of megabytes would not end.
void expect_file(const std::string& file, const std::string& expected) {
  const std::string actual = read(file);
  ASSERT_EQ(actual.size(), expected.size()) << file;
  const auto differ = std::mismatch(actual.begin(), actual.end(), expected.begin());
  EXPECT_TRUE(differ.first == actual.end()) << file << " differs at byte " << (differ.first - actual.begin());
}

void expect_written(const std::string& folder, int64_t rank, const GenericDict& state, const Outcome& outcome) {
  EXPECT_EQ(outcome.error, "");
  const std::string prefix = folder + "/r" + std::to_string(rank) + "_";
  const auto t = [&](const char* key) { return bytes_of(state.at(key).toTensor()); };
  expect_file(prefix + "0.bin", t("a") + t("c") + t("d"));
  expect_file(prefix + "1.bin", t("b") + t("empty"));
  const std::string c_at = std::to_string(t("a").size());
  const std::string d_at = std::to_string(t("a").size() + t("c").size());
  const std::string empty_at = std::to_string(t("b").size());
  EXPECT_EQ(outcome.result, "a 0 0;b 1 0;c 0 " + c_at + ";empty 1 " + empty_at + ";d 0 " + d_at + ";");
}

TEST_F(SavePipelineTest, AFormatOfItsOwnPlugsInWholeAndInWaves) {
  const auto format = std::make_shared<const TwoFileFormat>();
  const GenericDict state = pipeline_state();
  for (const int64_t budget : {int64_t{0}, SaveOptions::kMinStagingBytes}) {
    for (const int64_t threads : {1, 3}) {
      SaveOptions options;
      options.max_staging_bytes = budget;
      options.staging_threads = threads;
      SavePipeline pipeline(options, "SavePipelineTest", format);
      const std::string name = "b" + std::to_string(budget) + "_t" + std::to_string(threads);
      for (int i = 0; i < 2; ++i) { // the second reuses the staging memory
        SCOPED_TRACE(name + " save " + std::to_string(i));
        const std::string into = folder(name + "_" + std::to_string(i));
        expect_written(into, 3, state, save(pipeline, into, 3, state));
      }
    }
  }
}

TEST_F(SavePipelineTest, APlanThatFailsIsTheStagingsFailureAndWritesNothing) {
  SavePipeline pipeline(SaveOptions{}, "SavePipelineTest", std::make_shared<const TwoFileFormat>());
  GenericDict state(c10::StringType::get(), c10::AnyType::get());
  state.insert("t", torch::randn({4, 4}).t());
  const Outcome outcome = save(pipeline, folder("a"), 0, state);
  EXPECT_NE(outcome.error.find("TwoFileFormat takes contiguous tensors"), std::string::npos) << outcome.error;
  EXPECT_EQ(outcome.failed, SavePhase::kStaging);
  EXPECT_FALSE(fs::exists(folder("a")));
}

TEST_F(SavePipelineTest, ASinkThatFailsIsTheWritesFailure) {
  for (const int64_t budget : {int64_t{0}, SaveOptions::kMinStagingBytes}) {
    SaveOptions options;
    options.max_staging_bytes = budget;
    SavePipeline pipeline(options, "SavePipelineTest", std::make_shared<const TwoFileFormat>());
    std::ofstream(folder("file")) << "a regular file, not a folder";
    const Outcome outcome = save(pipeline, folder("file") + "/step", 0, pipeline_state());
    EXPECT_NE(outcome.error, "") << budget;
    EXPECT_EQ(outcome.failed, SavePhase::kWriting) << budget;
  }
}

} // namespace
