// DCP's standard format from C++: <torch_ext/dcp.h>. Upstream's side of the
// format is tested against real upstream in test/test_dcp_format.py.
#include <torch_ext/dcp.h>

#include <gtest/gtest.h>

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "test_files.h"
#include "test_values.h"

namespace {

using torch_ext_test::string_dict;

namespace fs = std::filesystem;
using c10::IValue;
using GenericDict = c10::impl::GenericDict;
using torch_ext::dcp::Chunk;
using torch_ext::dcp::ItemIndex;

// folder(): the checkpoint's folder, not there at the start.
class DcpTest : public torch_ext_test::TempFolderTest {
 protected:
  std::string folder() const {
    return path("checkpoint");
  }
};

// Equal kinds, keys in order, tensors of equal dtype, shape and bytes.
void expect_same(const IValue& actual, const IValue& expected, const std::string& path = "") {
  ASSERT_EQ(actual.tagKind(), expected.tagKind()) << path;
  if (expected.isTensor()) {
    const at::Tensor a = actual.toTensor();
    const at::Tensor e = expected.toTensor();
    ASSERT_EQ(a.scalar_type(), e.scalar_type()) << path;
    ASSERT_EQ(a.sizes(), e.sizes()) << path;
    EXPECT_TRUE(at::equal(a.reshape({-1}).view(at::kByte), e.reshape({-1}).view(at::kByte))) << path;
  } else if (expected.isGenericDict()) {
    const auto a = actual.toGenericDict();
    const auto e = expected.toGenericDict();
    ASSERT_EQ(a.size(), e.size()) << path;
    auto it = a.begin();
    for (const auto& entry : e) {
      ASSERT_EQ(it->key(), entry.key()) << path;
      expect_same(it->value(), entry.value(), path + "." + entry.key().toStringRef());
      ++it;
    }
  } else if (expected.isList() || expected.isTuple()) {
    const auto a = expected.isList() ? actual.toListRef().vec() : actual.toTupleRef().elements().vec();
    const auto e = expected.isList() ? expected.toListRef().vec() : expected.toTupleRef().elements().vec();
    ASSERT_EQ(a.size(), e.size()) << path;
    for (size_t i = 0; i < e.size(); ++i) {
      expect_same(a[i], e[i], path + "." + std::to_string(i));
    }
  } else {
    EXPECT_EQ(actual, expected) << path;
  }
}

// A state dict of every kind of value, as a read gives it back: DCP keeps
// nesting and values, and drops nothing here (no empty dict, str keys).
IValue state_dict() {
  GenericDict model = string_dict();
  model.insert("0.weight", torch::arange(12, torch::kFloat).reshape({3, 4}));
  model.insert("0.bias", torch::tensor({1.5, -2.0}, torch::kBFloat16));
  model.insert("1.num_batches_tracked", torch::tensor(7, torch::kLong));
  GenericDict group = string_dict();
  group.insert("lr", 0.01);
  group.insert("betas", c10::ivalue::Tuple::create({0.9, 0.999}));
  group.insert("params", c10::List<int64_t>({0, 1}));
  c10::impl::GenericList groups(c10::AnyType::get());
  groups.push_back(group);
  GenericDict optim = string_dict();
  optim.insert("param_groups", groups);
  c10::impl::GenericList tensors(c10::AnyType::get());
  tensors.push_back(torch::ones({2}, torch::kInt));
  tensors.push_back(torch::tensor({true, false}));
  GenericDict extra = string_dict();
  extra.insert("tensors", tensors);
  extra.insert("empty", torch::empty({0, 3}));
  extra.insert("transposed", torch::arange(6, torch::kDouble).reshape({2, 3}).t());
  extra.insert("text", std::string("hello"));
  extra.insert("nothing", IValue());
  GenericDict state = string_dict();
  state.insert("model", model);
  state.insert("optim", optim);
  state.insert("extra", extra);
  state.insert("step", int64_t{10});
  return state;
}

TEST_F(DcpTest, WrittenCheckpointReadsBackBitwise) {
  const IValue state = state_dict();
  torch_ext::write_dcp_checkpoint(folder(), state);
  EXPECT_TRUE(fs::exists(fs::path(folder()) / ".metadata"));
  EXPECT_TRUE(fs::exists(fs::path(folder()) / "__0_0.distcp"));
  expect_same(torch_ext::read_dcp_checkpoint(folder()), state);
}

TEST_F(DcpTest, ThreadsWriteAFileEachAndCompressionReadsBack) {
  const IValue state = state_dict();
  torch_ext::write_dcp_checkpoint(folder(), state, torch_ext::DcpWriteOptions{4, /*compress=*/true});
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(fs::exists(fs::path(folder()) / torch_ext::dcp::data_file_name(0, i)));
  }
  const torch_ext::dcp::CheckpointReader reader(folder());
  for (const auto& [index, location] : reader.metadata().storage_data) {
    EXPECT_EQ(location.transform_descriptors, std::vector<std::string>{"stream.zstd/1"}) << index.fqn;
  }
  expect_same(torch_ext::read_dcp_checkpoint(folder()), state);
}

TEST_F(DcpTest, KeysReadOnlyTheirEntries) {
  torch_ext::write_dcp_checkpoint(folder(), state_dict());
  const IValue part = torch_ext::read_dcp_checkpoint(folder(), {true, {"model.0.weight", "optim.param_groups.0.lr"}});
  GenericDict model = string_dict();
  model.insert("0.weight", torch::arange(12, torch::kFloat).reshape({3, 4}));
  GenericDict group = string_dict();
  group.insert("lr", 0.01);
  c10::impl::GenericList groups(c10::AnyType::get());
  groups.push_back(group);
  GenericDict optim = string_dict();
  optim.insert("param_groups", groups);
  GenericDict expected = string_dict();
  expected.insert("model", model);
  expected.insert("optim", optim);
  expect_same(part, expected);
}

// Keys are key paths (key_path.h), as upstream flattens them: an empty dict
// key is an empty step (`".".join(["", "w"])` is ".w"), and the path that
// the metadata records selects its entry.
TEST_F(DcpTest, FlattenedKeysAreKeyPaths) {
  GenericDict inner = string_dict();
  inner.insert("w", torch::ones({2}));
  GenericDict state = string_dict();
  state.insert("", inner);
  state.insert("step", int64_t{3});
  torch_ext::write_dcp_checkpoint(folder(), state);
  const torch_ext::dcp::Metadata metadata = torch_ext::dcp::read_metadata(folder());
  ASSERT_EQ(metadata.state_dict_metadata.size(), 2u);
  EXPECT_EQ(metadata.state_dict_metadata[0].first, ".w");
  GenericDict expected = string_dict();
  expected.insert("", inner);
  expect_same(torch_ext::read_dcp_checkpoint(folder(), {true, {".w"}}), expected);
}

TEST_F(DcpTest, MetadataReadsBackAsWritten) {
  torch_ext::dcp::Metadata metadata;
  torch_ext::dcp::TensorEntry tensor;
  tensor.dtype = at::kHalf;
  tensor.size = {int64_t{3} << 31, 2};
  tensor.chunks = {Chunk{{0, 0}, {int64_t{1} << 31, 2}}, Chunk{{int64_t{1} << 31, 0}, {int64_t{2} << 31, 2}}};
  tensor.memory_format = 1;
  metadata.state_dict_metadata.emplace_back("big.weight", tensor);
  metadata.state_dict_metadata.emplace_back("big.step", torch_ext::dcp::BytesEntry{});
  metadata.planner_data.emplace();
  metadata.planner_data->emplace_back("big.weight", torch_ext::dcp::ObjectPath{"big", "weight"});
  metadata.planner_data->emplace_back("big.step", torch_ext::dcp::ObjectPath{"big", int64_t{0}});
  const std::string long_name(300, 'x');
  metadata.storage_data.emplace_back(
      ItemIndex{"big.weight", std::vector<int64_t>{0, 0}, 0}, torch_ext::dcp::ItemLocation{"__0_0.distcp", 0, 10, {}});
  metadata.storage_data.emplace_back(
      ItemIndex{"big.weight", std::vector<int64_t>{int64_t{1} << 31, 0}, 1},
      torch_ext::dcp::ItemLocation{long_name, (uint64_t{1} << 40) + 3, 77, {"stream.zstd/1"}});
  metadata.storage_data.emplace_back(
      ItemIndex{"big.step", std::nullopt, std::nullopt}, torch_ext::dcp::ItemLocation{"__1_0.distcp", 70000, 5, {}});
  metadata.storage_meta = torch_ext::dcp::StorageMeta{"/some/where", "an id", std::nullopt, {"a module"}};
  metadata.version = "1.0.0";

  torch_ext::dcp::prepare_folder(folder());
  torch_ext::dcp::commit_metadata(folder(), metadata);
  const torch_ext::dcp::Metadata read = torch_ext::dcp::read_metadata(folder());
  ASSERT_EQ(read.state_dict_metadata.size(), 2u);
  const auto& read_tensor = std::get<torch_ext::dcp::TensorEntry>(read.state_dict_metadata[0].second);
  EXPECT_EQ(read_tensor.dtype, at::kHalf);
  EXPECT_EQ(read_tensor.size, tensor.size);
  EXPECT_EQ(read_tensor.chunks, tensor.chunks);
  EXPECT_EQ(read_tensor.memory_format, 1);
  EXPECT_TRUE(std::holds_alternative<torch_ext::dcp::BytesEntry>(read.state_dict_metadata[1].second));
  EXPECT_EQ(read.planner_data, metadata.planner_data);
  ASSERT_EQ(read.storage_data.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(read.storage_data[i].first, metadata.storage_data[i].first);
    EXPECT_EQ(read.storage_data[i].first.index, metadata.storage_data[i].first.index);
    const auto& [path, offset, length, descriptors] = read.storage_data[i].second;
    const auto& written = metadata.storage_data[i].second;
    EXPECT_EQ(std::tie(path, offset, length, descriptors),
              std::tie(written.relative_path, written.offset, written.length, written.transform_descriptors));
  }
  EXPECT_EQ(read.storage_meta->checkpoint_id, "/some/where");
  EXPECT_EQ(read.storage_meta->save_id, "an id");
  EXPECT_FALSE(read.storage_meta->load_id.has_value());
  EXPECT_EQ(read.storage_meta->modules, std::vector<std::string>{"a module"});
  EXPECT_EQ(read.version, "1.0.0");
}

// Two ranks' chunks of a 7x8 weight (rows 0-3 and 4-6), each in its rank's
// file, committed by rank 0 with both ranks' results.
void write_two_ranks(const std::string& folder, const at::Tensor& weight) {
  torch_ext::dcp::prepare_folder(folder);
  torch_ext::dcp::Metadata metadata;
  torch_ext::dcp::TensorEntry entry;
  entry.dtype = weight.scalar_type();
  entry.size = weight.sizes().vec();
  entry.chunks = {Chunk{{0, 0}, {4, 8}}, Chunk{{4, 0}, {3, 8}}};
  metadata.state_dict_metadata.emplace_back("weight", entry);
  metadata.state_dict_metadata.emplace_back("step", torch_ext::dcp::BytesEntry{});
  for (int64_t rank = 0; rank < 2; ++rank) {
    torch_ext::dcp::DataFileWriter out(folder, torch_ext::dcp::data_file_name(rank, 0));
    std::vector<torch_ext::dcp::WriteResult> results;
    const Chunk& chunk = entry.chunks[static_cast<size_t>(rank)];
    results.push_back(
        out.write_tensor(ItemIndex{"weight", chunk.offsets, rank}, weight.narrow(0, chunk.offsets[0], chunk.sizes[0])));
    if (rank == 0) {
      results.push_back(out.write_object(ItemIndex{"step", std::nullopt, std::nullopt}, int64_t{42}));
    }
    out.commit();
    for (auto& result : results) {
      metadata.storage_data.emplace_back(result.index, result.location);
    }
  }
  torch_ext::dcp::commit_metadata(folder, metadata);
}

TEST_F(DcpTest, ChunksOfSeveralRanksReadWholeAndByRegion) {
  const at::Tensor weight = torch::randn({7, 8});
  write_two_ranks(folder(), weight);
  GenericDict expected = string_dict();
  expected.insert("weight", weight);
  expected.insert("step", int64_t{42});
  expect_same(torch_ext::read_dcp_checkpoint(folder()), expected);

  // Rank 1 of 3 owns rows 3-5: row 3 of the first chunk, rows 0-1 of the
  // second.
  const torch_ext::dcp::CheckpointReader reader(folder());
  at::Tensor owned = torch::empty({3, 8});
  at::Tensor first = owned.narrow(0, 0, 1);
  at::Tensor second = owned.narrow(0, 1, 2);
  reader.read_region_into(ItemIndex{"weight", std::vector<int64_t>{0, 0}, 0}, {3, 0}, {1, 8}, first);
  reader.read_region_into(ItemIndex{"weight", std::vector<int64_t>{4, 0}, 1}, {0, 0}, {2, 8}, second);
  EXPECT_TRUE(at::equal(owned, weight.narrow(0, 3, 3)));
  // Columns too.
  at::Tensor columns = torch::empty({3, 2});
  reader.read_region_into(ItemIndex{"weight", std::vector<int64_t>{4, 0}, 1}, {0, 5}, {3, 2}, columns);
  EXPECT_TRUE(at::equal(columns, weight.narrow(0, 4, 3).narrow(1, 5, 2)));
  EXPECT_EQ(reader.read_object(ItemIndex{"step", std::nullopt, std::nullopt}), IValue(int64_t{42}));

  at::Tensor wrong = torch::empty({2, 8});
  EXPECT_THROW(
      reader.read_region_into(ItemIndex{"weight", std::vector<int64_t>{4, 0}, 1}, {2, 0}, {2, 8}, wrong),
      c10::ValueError);
  EXPECT_THROW(reader.read_tensor(ItemIndex{"weight", std::vector<int64_t>{1, 0}, 0}), c10::IndexError);
}

TEST_F(DcpTest, EntriesAreReadByFqnWholeAndFlat) {
  const at::Tensor weight = torch::randn({7, 8});
  write_two_ranks(folder(), weight);
  const GenericDict entries = torch_ext::read_dcp_entries(folder(), {"step", "weight"});
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ((*entries.begin()).key(), IValue("step")); // in the order asked
  EXPECT_EQ(entries.at("step"), IValue(int64_t{42}));
  EXPECT_TRUE(at::equal(entries.at("weight").toTensor(), weight)); // its two chunks put together

  torch_ext::write_dcp_checkpoint(folder() + "_nested", state_dict());
  const GenericDict leaves = torch_ext::read_dcp_entries(folder() + "_nested", {"optim.param_groups.0.lr", "model.0.weight"});
  EXPECT_EQ(leaves.at("optim.param_groups.0.lr"), IValue(0.01));
  EXPECT_TRUE(at::equal(leaves.at("model.0.weight").toTensor(), torch::arange(12, torch::kFloat).reshape({3, 4})));
  try {
    torch_ext::read_dcp_entries(folder(), {"weight", "nowhere"});
    ADD_FAILURE() << "an fqn the checkpoint lacks was read";
  } catch (const c10::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'" + folder() + "' has no entry 'nowhere'"), std::string::npos) << e.what();
  }
  fs::remove_all(folder() + "_nested");
}

TEST_F(DcpTest, TheWriterWritesLeafByLeafWhatWriteDcpCheckpointWrites) {
  const IValue state = state_dict();
  {
    torch_ext::dcp::DcpWriter writer(folder());
    EXPECT_FALSE(fs::exists(fs::path(folder()) / ".metadata"));
    writer.write({std::string("model"), std::string("0.weight")}, torch::arange(12, torch::kFloat).reshape({3, 4}));
    writer.write({std::string("optim"), std::string("param_groups"), int64_t{0}, std::string("lr")}, 0.01);
    writer.write({std::string("step")}, int64_t{10});
    try {
      writer.write({std::string("step")}, int64_t{11});
      ADD_FAILURE() << "a key was written twice";
    } catch (const c10::ValueError& e) {
      EXPECT_NE(std::string(e.what()).find("has an entry 'step' already"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(fs::path(folder()) / ".metadata")); // nothing is a checkpoint before the commit
    writer.commit();
  }
  GenericDict model = string_dict();
  model.insert("0.weight", torch::arange(12, torch::kFloat).reshape({3, 4}));
  GenericDict group = string_dict();
  group.insert("lr", 0.01);
  c10::impl::GenericList groups(c10::AnyType::get());
  groups.push_back(group);
  GenericDict optim = string_dict();
  optim.insert("param_groups", groups);
  GenericDict expected = string_dict();
  expected.insert("model", model);
  expected.insert("optim", optim);
  expected.insert("step", int64_t{10});
  expect_same(torch_ext::read_dcp_checkpoint(folder()), expected);
  const torch_ext::dcp::Metadata metadata = torch_ext::dcp::read_metadata(folder());
  EXPECT_EQ(metadata.version, std::string(torch_ext::dcp::kVersion));
  ASSERT_TRUE(metadata.planner_data.has_value());
  EXPECT_EQ(metadata.planner_data->size(), 3u);

  // Abandoned before its commit, it leaves no checkpoint, and no earlier one either.
  {
    torch_ext::dcp::DcpWriter writer(folder());
    writer.write({std::string("step")}, int64_t{12});
  }
  EXPECT_FALSE(fs::exists(fs::path(folder()) / ".metadata"));
  EXPECT_THROW(torch_ext::read_dcp_checkpoint(folder()), c10::Error);
}

TEST_F(DcpTest, AFlippedBitNamesTheFolderTheFileAndTheKey) {
  const at::Tensor weight = torch::randn({7, 8});
  write_two_ranks(folder(), weight);
  const std::string file = (fs::path(folder()) / "__1_0.distcp").string();
  {
    // A bit of the last element of the second chunk, found in its item.
    const torch_ext::dcp::CheckpointReader reader(folder(), /*verify=*/false);
    const ItemIndex index{"weight", std::vector<int64_t>{4, 0}, std::nullopt};
    const auto& location = reader.location(index);
    const at::Tensor chunk = reader.read_tensor(index);
    const std::string last(static_cast<const char*>(chunk.data_ptr()) + chunk.nbytes() - 4, 4);
    std::fstream out(file, std::ios::in | std::ios::out | std::ios::binary);
    std::string item(location.length, '\0');
    out.seekg(static_cast<std::streamoff>(location.offset));
    out.read(item.data(), static_cast<std::streamsize>(item.size()));
    const size_t at = item.find(last);
    ASSERT_NE(at, std::string::npos);
    out.seekp(static_cast<std::streamoff>(location.offset + at));
    out.put(static_cast<char>(item[at] ^ 0x10));
  }
  try {
    torch_ext::read_dcp_checkpoint(folder());
    FAIL() << "a flipped bit was read";
  } catch (const c10::Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(folder()), std::string::npos) << message;
    EXPECT_NE(message.find("__1_0.distcp"), std::string::npos) << message;
    EXPECT_NE(message.find("'weight'"), std::string::npos) << message;
    EXPECT_NE(message.find("CRC32"), std::string::npos) << message;
  }
  // Unverified, the read goes through and the flip shows.
  const IValue unverified = torch_ext::read_dcp_checkpoint(folder(), {/*verify=*/false, {}});
  EXPECT_FALSE(at::equal(unverified.toGenericDict().at("weight").toTensor(), weight));
}

TEST_F(DcpTest, PreparingAFolderRemovesItsCommitFirst) {
  torch_ext::write_dcp_checkpoint(folder(), state_dict());
  torch_ext::dcp::prepare_folder(folder());
  EXPECT_FALSE(fs::exists(fs::path(folder()) / ".metadata"));
  EXPECT_TRUE(fs::exists(fs::path(folder()) / "__0_0.distcp"));
  try {
    torch_ext::read_dcp_checkpoint(folder());
    FAIL() << "a folder without its commit was read";
  } catch (const c10::Error& error) {
    EXPECT_NE(std::string(error.what()).find(".metadata"), std::string::npos) << error.what();
  }
}

TEST_F(DcpTest, ValuesACheckpointCannotHoldFailBeforeAnyFile) {
  GenericDict state = string_dict();
  state.insert("weight", torch::ones({2}).to_sparse());
  EXPECT_THROW(torch_ext::write_dcp_checkpoint(folder(), state), c10::TypeError);
  EXPECT_FALSE(fs::exists(folder()));
  EXPECT_THROW(torch_ext::write_dcp_checkpoint(folder(), IValue(int64_t{1})), c10::TypeError);
  EXPECT_THROW(torch_ext::write_dcp_checkpoint(folder(), string_dict(), {0, false}), c10::ValueError);
}

// FileSystemWriter.write_data's split: non-tensor items round-robin, tensors
// largest first to the least full file.
TEST_F(DcpTest, ARanksItemsAreDealtIntoItsFilesAsUpstreamDealsThem) {
  using torch_ext::dcp::SaveItem;
  const auto tensor_item = [](const std::string& fqn, int64_t numel) {
    return SaveItem{ItemIndex{fqn, std::vector<int64_t>{0}, 0}, torch::randn({numel}), std::nullopt};
  };
  const auto object_item = [](const std::string& fqn, IValue value) {
    return SaveItem{ItemIndex{fqn, std::nullopt, std::nullopt}, std::move(value), std::nullopt};
  };
  std::vector<SaveItem> items = {
      tensor_item("t10", 10),
      object_item("o0", int64_t{1}),
      tensor_item("t100", 100),
      object_item("o1", std::string("two")),
      tensor_item("t50", 50),
      object_item("o2", 3.5),
      tensor_item("t60", 60),
  };
  torch_ext::dcp::prepare_folder(folder());
  const auto results = torch_ext::dcp::write_data_files(folder(), 1, items, {/*thread_count=*/3});
  std::vector<std::pair<std::string, std::string>> placed;
  for (const auto& result : results) {
    placed.emplace_back(result.index.fqn, result.location.relative_path);
  }
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"o0", "__1_0.distcp"}, {"t100", "__1_0.distcp"}, {"o1", "__1_1.distcp"}, {"t60", "__1_1.distcp"},
      {"o2", "__1_2.distcp"}, {"t50", "__1_2.distcp"}, {"t10", "__1_2.distcp"},
  };
  EXPECT_EQ(placed, expected);

  // Committed, every item reads back; an item already serialized is written as it is.
  torch_ext::dcp::Metadata metadata;
  for (const SaveItem& item : items) {
    if (item.value.isTensor()) {
      const int64_t numel = item.value.toTensor().numel();
      metadata.state_dict_metadata.emplace_back(
          item.index.fqn, torch_ext::dcp::TensorEntry{at::kFloat, {numel}, {Chunk{{0}, {numel}}}});
    } else {
      metadata.state_dict_metadata.emplace_back(item.index.fqn, torch_ext::dcp::BytesEntry{});
    }
  }
  for (const auto& result : results) {
    metadata.storage_data.emplace_back(result.index, result.location);
  }
  torch_ext::dcp::commit_metadata(folder(), metadata);
  const torch_ext::dcp::CheckpointReader reader(folder());
  for (const SaveItem& item : items) {
    if (item.value.isTensor()) {
      EXPECT_TRUE(at::equal(reader.read_tensor(item.index), item.value.toTensor())) << item.index.fqn;
    } else {
      EXPECT_EQ(reader.read_object(item.index), item.value) << item.index.fqn;
    }
  }
  const fs::path again = path("again");
  const std::string bytes = reader.read_serialized(items[3].index);
  torch_ext::dcp::prepare_folder(again.string());
  const auto rewritten = torch_ext::dcp::write_data_files(
      again.string(), 0, {SaveItem{items[3].index, IValue(), bytes}}, {/*thread_count=*/2});
  ASSERT_EQ(rewritten.size(), 1u);
  EXPECT_EQ(rewritten[0].location.length, bytes.size());
  // A file left without items is written, empty, as upstream writes it.
  EXPECT_EQ(fs::file_size(again / "__0_1.distcp"), 0u);

  EXPECT_THROW(torch_ext::dcp::write_data_files(folder(), 0, items, {/*thread_count=*/0}), c10::ValueError);
}

TEST_F(DcpTest, RegionReadsOfALoadPlanFillTheirTensorsConvertingTheDtype) {
  const at::Tensor weight = torch::randn({7, 8});
  write_two_ranks(folder(), weight);
  const torch_ext::dcp::CheckpointReader reader(folder());
  // Rows 2-6 as 3 ranks of 2 would own them, in double.
  at::Tensor owned = torch::zeros({5, 8}, torch::kDouble);
  std::vector<torch_ext::dcp::RegionRead> reads = {
      {ItemIndex{"weight", std::vector<int64_t>{4, 0}, 1}, {0, 0}, {3, 8}, owned.narrow(0, 2, 3)},
      {ItemIndex{"weight", std::vector<int64_t>{0, 0}, 0}, {2, 0}, {2, 8}, owned.narrow(0, 0, 2)},
  };
  reader.read_regions_into(reads);
  EXPECT_TRUE(at::equal(owned, weight.narrow(0, 2, 5).to(torch::kDouble)));

  reads.push_back({ItemIndex{"weight", std::vector<int64_t>{4, 0}, 1}, {2, 0}, {2, 8}, torch::empty({2, 8})});
  EXPECT_THROW(reader.read_regions_into(reads), c10::ValueError);
}

} // namespace
