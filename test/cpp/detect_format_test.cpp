// The one rule that tells a path's format from what is on disk
// (torch_ext/csrc/format/detect_format.h), and read_checkpoint_file reading
// each format through that format's reader.
#include "torch_ext/csrc/format/detect_format.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <torch_ext/checkpoint_file.h>
#include <torch_ext/dcp.h>
#include <torch_ext/safetensors.h>

#include "torch_ext/csrc/manager/step_commit.h"
#include "test_checks.h"

namespace {

using torch_ext_test::contains;
using torch_ext_test::error_of;

namespace fs = std::filesystem;
using c10::impl::GenericDict;
using torch_ext::detail::detect_format;
using torch_ext::detail::DiskFormat;

class DetectFormatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
        ("torch_ext_detect_format." + std::to_string(::getpid()) + "." +
         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override {
    fs::remove_all(root_);
  }
  std::string path(const std::string& name) const {
    return (root_ / name).string();
  }
  fs::path root_;
};

GenericDict weights() {
  GenericDict state(c10::StringType::get(), c10::AnyType::get());
  state.insert("embed.weight", torch::arange(600, torch::kFloat32).reshape({20, 30}));
  state.insert("layers.0.weight", torch::arange(400, torch::kFloat32).reshape({20, 20}).to(torch::kBFloat16));
  state.insert("layers.0.bias", torch::arange(20, torch::kInt64));
  state.insert("norm.weight", torch::ones({20}, torch::kFloat16));
  return state;
}

void expect_tensors_equal(const c10::IValue& loaded, const GenericDict& expected) {
  const GenericDict dict = loaded.toGenericDict();
  ASSERT_EQ(dict.size(), expected.size());
  for (const auto& entry : expected) {
    ASSERT_TRUE(dict.contains(entry.key())) << entry.key().toStringRef();
    const at::Tensor got = dict.at(entry.key()).toTensor();
    const at::Tensor want = entry.value().toTensor();
    EXPECT_EQ(got.scalar_type(), want.scalar_type()) << entry.key().toStringRef();
    EXPECT_TRUE(got.equal(want)) << entry.key().toStringRef();
  }
}

void flip_a_bit(const std::string& file, uint64_t offset) {
  std::fstream stream(file, std::ios::in | std::ios::out | std::ios::binary);
  stream.seekg(static_cast<std::streamoff>(offset));
  const char byte = static_cast<char>(stream.get() ^ 0x10);
  stream.seekp(static_cast<std::streamoff>(offset));
  stream.put(byte);
}

TEST_F(DetectFormatTest, EachFormatIsToldFromWhatIsOnDisk) {
  const GenericDict state = weights();
  torch_ext::write_checkpoint_file(path("a.safetensors"), state); // a torch.save file, whatever its name
  torch_ext::write_safetensors_file(path("b.pt"), state); // a safetensors file, whatever its name
  torch_ext::write_dcp_checkpoint(path("dcp"), state);
  torch_ext::write_safetensors_folder(path("sharded"), state, 1000);
  EXPECT_EQ(detect_format(path("a.safetensors")), DiskFormat::TorchSave);
  EXPECT_EQ(detect_format(path("b.pt")), DiskFormat::Safetensors);
  EXPECT_EQ(detect_format(path("dcp")), DiskFormat::Dcp);
  EXPECT_EQ(detect_format(path("sharded")), DiskFormat::SafetensorsFolder);
  for (const char* file : {"a.safetensors", "b.pt", "dcp", "sharded"}) {
    expect_tensors_equal(torch_ext::read_checkpoint_file(path(file)), state);
  }
}

TEST_F(DetectFormatTest, ASafetensorsFileIsReadByItsReaderWithVerifyAndKeys) {
  const std::string file = path("model.safetensors");
  torch_ext::write_safetensors_file(file, weights());
  const GenericDict part = torch_ext::read_checkpoint_file(file, {true, {"norm.weight", "layers.0.bias"}}).toGenericDict();
  ASSERT_EQ(part.size(), 2u);
  EXPECT_TRUE(part.contains("norm.weight"));
  EXPECT_TRUE(part.contains("layers.0.bias"));
  EXPECT_TRUE(contains(error_of([&] { torch_ext::read_checkpoint_file(file, {true, {"layers"}}); }), "'layers'"));

  flip_a_bit(file, torch_ext::SafetensorsFile(file).info("embed.weight").offset + 100);
  const std::string error = error_of([&] { torch_ext::read_checkpoint_file(file); });
  EXPECT_TRUE(contains(error, "the safetensors file '" + file + "'")) << error;
  EXPECT_TRUE(contains(error, "tensor 'embed.weight' fails its CRC32 check")) << error;
  // Unverified, the damage is read as it is; a load of the other keys never reads it.
  EXPECT_FALSE(torch_ext::read_checkpoint_file(file, {false, {}}).toGenericDict().at("embed.weight").toTensor().equal(
      weights().at("embed.weight").toTensor()));
  EXPECT_EQ(torch_ext::read_checkpoint_file(file, {true, {"norm.weight"}}).toGenericDict().size(), 1u);
}

TEST_F(DetectFormatTest, AShardedFolderIsReadAsOneStateDict) {
  const std::string folder = path("model");
  const GenericDict state = weights();
  torch_ext::write_safetensors_folder(folder, state, 1000);
  ASSERT_GT(torch_ext::SafetensorsFolder(folder).shards().size(), 1u);
  expect_tensors_equal(torch_ext::read_checkpoint_file(folder), state);
  const GenericDict part = torch_ext::read_checkpoint_file(folder, {true, {"embed.weight", "norm.weight"}}).toGenericDict();
  EXPECT_EQ(part.size(), 2u);

  const std::string shard = torch_ext::SafetensorsFolder(folder).shard_of("norm.weight").path();
  flip_a_bit(shard, torch_ext::SafetensorsFile(shard).info("norm.weight").offset + 3);
  const std::string error = error_of([&] { torch_ext::read_checkpoint_file(folder); });
  EXPECT_TRUE(contains(error, "'" + shard + "'") && contains(error, "'norm.weight' fails its CRC32")) << error;
  EXPECT_EQ(torch_ext::read_checkpoint_file(folder, {false, {}}).toGenericDict().size(), state.size());
}

TEST_F(DetectFormatTest, AnIndexOfAnyNameMarksTheFolder) {
  const std::string folder = path("unet");
  const GenericDict state = weights();
  torch_ext::write_safetensors_folder(folder, state, 1000);
  fs::rename(fs::path(folder) / torch_ext::kSafetensorsIndexName,
             fs::path(folder) / "diffusion_pytorch_model.safetensors.index.json");
  EXPECT_EQ(detect_format(folder), DiskFormat::SafetensorsFolder);
  expect_tensors_equal(torch_ext::read_checkpoint_file(folder), state);
  EXPECT_TRUE(torch_ext::SafetensorsFolder(folder).total_size().has_value());
}

TEST_F(DetectFormatTest, AFolderOfOneShardIsItsModelSafetensors) {
  const std::string folder = path("small");
  const GenericDict state = weights();
  torch_ext::write_safetensors_folder(folder, state);
  ASSERT_TRUE(fs::is_regular_file(fs::path(folder) / torch_ext::kSafetensorsSingleName));
  ASSERT_FALSE(fs::exists(fs::path(folder) / torch_ext::kSafetensorsIndexName));
  EXPECT_EQ(detect_format(folder), DiskFormat::SafetensorsFolder);
  expect_tensors_equal(torch_ext::read_checkpoint_file(folder), state);
}

TEST_F(DetectFormatTest, AFolderWithTheMarksOfTwoIsRefusedNamingBoth) {
  const std::string folder = path("both");
  torch_ext::write_dcp_checkpoint(folder, weights());
  torch_ext::write_safetensors_folder(folder, weights(), 1000);
  std::string error = error_of([&] { detect_format(folder); });
  EXPECT_TRUE(contains(error, "'" + folder + "'")) << error;
  EXPECT_TRUE(contains(error, "'.metadata' and 'model.safetensors.index.json'")) << error;
  EXPECT_TRUE(contains(error, "a folder holds one checkpoint")) << error;

  const std::string two = path("two");
  torch_ext::write_safetensors_folder(two, weights(), 1000);
  fs::copy_file(fs::path(two) / torch_ext::kSafetensorsIndexName, fs::path(two) / "other.safetensors.index.json");
  error = error_of([&] { torch_ext::read_checkpoint_file(two); });
  EXPECT_TRUE(contains(error, "holds two safetensors indexes, 'model.safetensors.index.json' and 'other.safetensors.index.json'"))
      << error;
}

TEST_F(DetectFormatTest, ACheckpointManagerRootIsNamedAndListed) {
  const std::string root = path("run");
  for (const int64_t step : {10, 20}) {
    torch_ext::write_checkpoint(torch_ext::detail::step_path(root, step), 0, weights());
    torch_ext::write_checkpoint(torch_ext::detail::step_path(root, step), 1, weights());
  }
  torch_ext::detail::commit_step(root, 10, 2);
  fs::create_directories(fs::path(root) / "step_007"); // not a step's name: ignored
  EXPECT_EQ(detect_format(root), DiskFormat::ManagerRoot);
  const std::string error = error_of([&] { torch_ext::read_checkpoint_file(root); });
  EXPECT_TRUE(contains(error, "a CheckpointManager root")) << error;
  EXPECT_TRUE(contains(error, "CheckpointManager(root).load(step)")) << error;

  const std::vector<torch_ext::detail::StepFolder> steps = torch_ext::detail::step_folders(root);
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].step, 10);
  EXPECT_TRUE(steps[0].committed);
  EXPECT_EQ(steps[0].world_size, 2);
  EXPECT_EQ(steps[0].rank_files,
            (std::vector<std::string>{torch_ext::checkpoint_file_path(steps[0].path, 0),
                                      torch_ext::checkpoint_file_path(steps[0].path, 1)}));
  EXPECT_TRUE(fs::is_regular_file(steps[0].commit_file));
  EXPECT_EQ(steps[1].step, 20);
  EXPECT_FALSE(steps[1].committed);
  EXPECT_FALSE(steps[1].world_size.has_value());
  EXPECT_TRUE(steps[1].rank_files.empty());

  // A commit file that says something else names no ranks.
  std::ofstream(steps[0].commit_file, std::ios::trunc) << "step 10\nworld_size x\n";
  EXPECT_FALSE(torch_ext::detail::step_folders(root)[0].world_size.has_value());
  EXPECT_TRUE(torch_ext::detail::step_folders(root)[0].committed);
}

TEST_F(DetectFormatTest, AFolderWithoutMarksSaysWhatItLacks) {
  const std::string folder = path("empty");
  fs::create_directories(folder);
  std::ofstream(fs::path(folder) / "notes.txt") << "x";
  const std::string error = error_of([&] { torch_ext::read_checkpoint_file(folder); });
  EXPECT_TRUE(contains(error, "'" + folder + "': it is a folder without the .metadata file of a DCP checkpoint")) << error;
  EXPECT_TRUE(contains(error, "*.safetensors.index.json or model.safetensors")) << error;
  EXPECT_TRUE(contains(error, "step_<n> folders of a CheckpointManager root")) << error;
}

} // namespace
