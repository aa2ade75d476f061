// The checkpoint file layer from C++: write_checkpoint_file and
// read_checkpoint_file with every kind of value (checkpoint_values.h).
#include <torch_ext/checkpoint_file.h>
#include <torch_ext/checkpoint_values.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_files.h"
#include "torch_ext/csrc/torch_save/torch_save_file_writer.h"

namespace {

namespace fs = std::filesystem;
using c10::impl::GenericDict;
using c10::impl::GenericList;

class CheckpointFileTest : public torch_ext_test::TempFolderTest {
 protected:
  std::string file(const std::string& name) const {
    return path(name);
  }
};

GenericDict any_dict() {
  return GenericDict(c10::AnyType::get(), c10::AnyType::get());
}

c10::IValue tuple(std::vector<c10::IValue> items) {
  return c10::ivalue::Tuple::create(std::move(items));
}

// A model's state dict as Python has it: an OrderedDict with _metadata.
GenericDict model_state(const at::Tensor& tied) {
  GenericDict state = any_dict();
  state.insert("embed.weight", tied);
  state.insert("bn.running_mean", torch::randn({4}));
  state.insert("bn.num_batches_tracked", torch::tensor(3, torch::kInt64));
  state.insert("head.weight", tied);
  GenericDict version = any_dict();
  version.insert("version", int64_t{2});
  GenericDict metadata = any_dict();
  metadata.insert("", version);
  torch_ext::mark_ordered_dict(metadata, GenericDict(c10::StringType::get(), c10::AnyType::get()));
  GenericDict attributes(c10::StringType::get(), c10::AnyType::get());
  attributes.insert("_metadata", metadata);
  torch_ext::mark_ordered_dict(state, attributes);
  return state;
}

GenericDict every_kind() {
  const at::Tensor base = torch::arange(24, torch::kFloat32).reshape({4, 6});
  GenericDict views = any_dict();
  views.insert("base", base);
  views.insert("column", base.select(1, 2));
  views.insert("transposed", base.t());
  views.insert("slice", base.slice(0, 1, 3).slice(1, 2, 5));
  GenericDict dtypes = any_dict();
  for (const auto dtype :
       {torch::kFloat64, torch::kFloat32, torch::kFloat16, torch::kBFloat16, torch::kComplexFloat,
        torch::kComplexDouble, torch::kBool, torch::kInt8, torch::kInt16, torch::kInt32, torch::kInt64,
        torch::kUInt8, torch::kUInt16, torch::kUInt32, torch::kUInt64, torch::kFloat8_e4m3fn, torch::kFloat8_e5m2}) {
    dtypes.insert(std::string(c10::toString(dtype)), torch::ones({2, 3}, torch::kFloat32).to(dtype));
  }
  GenericDict keys = any_dict(); // every kind of key
  keys.insert(int64_t{0}, std::string("int"));
  keys.insert(2.5, std::string("float"));
  keys.insert(false, std::string("bool"));
  keys.insert(std::string("s"), std::string("str"));
  GenericList list(c10::AnyType::get());
  list.push_back(torch::tensor(3.5)); // 0-dim
  list.push_back(torch::empty({0, 4})); // empty
  list.push_back(torch_ext::make_size({4, 6}));
  list.push_back(tuple({int64_t{1}, tuple({2.5, c10::IValue()}), std::string("three")}));
  list.push_back(int64_t{1} << 40);
  list.push_back(std::numeric_limits<int64_t>::min());

  GenericDict state = any_dict();
  state.insert("model", model_state(torch::randn({16, 8})));
  state.insert("views", views);
  state.insert("dtypes", dtypes);
  state.insert("keys", keys);
  state.insert("list", list);
  state.insert("none", c10::IValue());
  return state;
}

std::vector<at::Tensor> tensors_in(const c10::IValue& value) {
  std::vector<at::Tensor> tensors;
  if (value.isTensor()) {
    tensors.push_back(value.toTensor());
  } else if (value.isGenericDict()) {
    for (const auto& entry : value.toGenericDict()) {
      for (auto& tensor : tensors_in(entry.value())) {
        tensors.push_back(tensor);
      }
    }
  } else if (value.isList() || value.isTuple()) {
    const auto items = value.isList() ? value.toListRef().vec() : value.toTupleRef().elements().vec();
    for (const auto& item : items) {
      for (auto& tensor : tensors_in(item)) {
        tensors.push_back(tensor);
      }
    }
  }
  return tensors;
}

// For each tensor in order, the index of the first with its storage.
std::vector<size_t> sharing(const c10::IValue& value) {
  std::vector<size_t> result;
  std::vector<const void*> storages;
  for (const auto& tensor : tensors_in(value)) {
    const void* storage = tensor.storage().unsafeGetStorageImpl();
    const auto found = std::find(storages.begin(), storages.end(), storage);
    result.push_back(static_cast<size_t>(found - storages.begin()));
    if (found == storages.end()) {
      storages.push_back(storage);
    }
  }
  return result;
}

// Equal kinds, keys in order, attributes, tensors bitwise with layout.
void expect_same(const c10::IValue& expected, const c10::IValue& actual, const std::string& where = "") {
  ASSERT_EQ(torch_ext::value_kind(expected), torch_ext::value_kind(actual)) << where;
  if (expected.isTensor()) {
    const at::Tensor& e = expected.toTensor();
    const at::Tensor& a = actual.toTensor();
    EXPECT_EQ(e.scalar_type(), a.scalar_type()) << where;
    EXPECT_EQ(e.sizes(), a.sizes()) << where;
    EXPECT_EQ(e.strides(), a.strides()) << where;
    EXPECT_EQ(e.storage_offset(), a.storage_offset()) << where;
    ASSERT_EQ(e.storage().nbytes(), a.storage().nbytes()) << where;
    if (e.storage().nbytes() > 0) { // an empty storage may have no data pointer: memcmp(nullptr) is UB
      EXPECT_EQ(std::memcmp(e.storage().data(), a.storage().data(), e.storage().nbytes()), 0) << where;
    }
  } else if (expected.isGenericDict()) {
    const auto e = expected.toGenericDict();
    const auto a = actual.toGenericDict();
    ASSERT_EQ(e.size(), a.size()) << where;
    for (auto ei = e.begin(), ai = a.begin(); ei != e.end(); ++ei, ++ai) {
      ASSERT_EQ(ei->key(), ai->key()) << where; // same keys, same order
      EXPECT_EQ(ei->key().tagKind(), ai->key().tagKind()) << where;
      expect_same(ei->value(), ai->value(), where + "." + c10::str(ei->key()));
    }
    const auto e_attributes = torch_ext::ordered_dict_attributes(expected);
    if (e_attributes) {
      expect_same(*e_attributes, *torch_ext::ordered_dict_attributes(actual), where + ".__dict__");
    }
  } else if (expected.isList() || expected.isTuple()) {
    const auto e = expected.isList() ? expected.toListRef().vec() : expected.toTupleRef().elements().vec();
    const auto a = actual.isList() ? actual.toListRef().vec() : actual.toTupleRef().elements().vec();
    ASSERT_EQ(e.size(), a.size()) << where;
    for (size_t i = 0; i < e.size(); ++i) {
      expect_same(e[i], a[i], where + "[" + std::to_string(i) + "]");
    }
  } else {
    EXPECT_EQ(expected, actual) << where;
    EXPECT_EQ(expected.tagKind(), actual.tagKind()) << where;
  }
}

TEST_F(CheckpointFileTest, EveryKindOfValueReadsBackTheSame) {
  const GenericDict state = every_kind();
  torch_ext::write_checkpoint_file(file("ckpt.pt"), state);
  for (const bool verify : {true, false}) {
    const c10::IValue loaded = torch_ext::read_checkpoint_file(file("ckpt.pt"), {verify, {}});
    expect_same(state, loaded);
    EXPECT_EQ(sharing(state), sharing(loaded));
    // Dict(str, Any), TorchScript's type of a state dict, where every key is a str.
    const auto dict = loaded.toGenericDict();
    EXPECT_EQ(dict.keyType()->kind(), c10::TypeKind::StringType);
    EXPECT_EQ(dict.at("keys").toGenericDict().keyType()->kind(), c10::TypeKind::AnyType);
  }
}

TEST_F(CheckpointFileTest, AnOrderedDictReadBackIsWrittenBackAsTheSameOrderedDict) {
  const GenericDict model = model_state(torch::randn({16, 8}));
  torch_ext::write_checkpoint_file(file("a.pt"), model);
  const c10::IValue once = torch_ext::read_checkpoint_file(file("a.pt"));
  EXPECT_EQ(torch_ext::value_kind(once), torch_ext::ValueKind::OrderedDict);
  torch_ext::write_checkpoint_file(file("b.pt"), once);
  const c10::IValue twice = torch_ext::read_checkpoint_file(file("b.pt"));
  expect_same(model, twice);
  // The tie of embed.weight and head.weight survives both trips.
  const auto dict = twice.toGenericDict();
  EXPECT_TRUE(dict.at("embed.weight").toTensor().is_alias_of(dict.at("head.weight").toTensor()));
}

TEST_F(CheckpointFileTest, TensorsThatShareAStorageAreWrittenOnce) {
  const at::Tensor weight = torch::randn({1024, 256});
  GenericDict tied = any_dict();
  tied.insert("embed", weight);
  tied.insert("head", weight);
  tied.insert("half", weight.slice(0, 0, 512));
  GenericDict one = any_dict();
  one.insert("embed", weight);
  torch_ext::write_checkpoint_file(file("tied.pt"), tied);
  torch_ext::write_checkpoint_file(file("one.pt"), one);
  EXPECT_LT(fs::file_size(file("tied.pt")) - fs::file_size(file("one.pt")), 4096u);
}

TEST_F(CheckpointFileTest, AValueACheckpointCannotHoldIsRefusedNamingItsKeyAndNothingIsWritten) {
  GenericDict inner = any_dict();
  inner.insert(int64_t{0}, c10::IValue(c10::complex<double>(1, 2)));
  GenericList layers(c10::AnyType::get());
  layers.push_back(int64_t{1});
  layers.push_back(inner);
  GenericDict state = any_dict();
  state.insert("layers", layers);
  try {
    torch_ext::write_checkpoint_file(file("bad.pt"), state);
    FAIL() << "expected a TypeError";
  } catch (const c10::TypeError& e) {
    EXPECT_NE(std::string(e.what()).find("state_dict entry 'layers.1.0' is a ComplexDouble"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(fs::is_empty(root()));
}

TEST_F(CheckpointFileTest, AStorageViewedWithTwoDtypesIsRefusedAsTorchSaveRefusesIt) {
  const at::Tensor floats = torch::randn({8});
  GenericDict state = any_dict();
  state.insert("floats", floats);
  state.insert("ints", floats.view(torch::kInt32));
  EXPECT_THROW(torch_ext::write_checkpoint_file(file("bad.pt"), state), c10::TypeError);
}

TEST_F(CheckpointFileTest, PartialReadReturnsTheNamedEntriesInTheFilesNesting) {
  const GenericDict state = every_kind();
  torch_ext::write_checkpoint_file(file("ckpt.pt"), state);
  const c10::IValue loaded =
      torch_ext::read_checkpoint_file(file("ckpt.pt"), {true, {"model.bn.running_mean", "keys.0", "list.2"}});
  const auto dict = loaded.toGenericDict();
  ASSERT_EQ(dict.size(), 3u);
  const auto model = dict.at("model");
  EXPECT_EQ(torch_ext::value_kind(model), torch_ext::ValueKind::OrderedDict);
  ASSERT_EQ(model.toGenericDict().size(), 1u);
  expect_same(state.at("model").toGenericDict().at("bn.running_mean"), model.toGenericDict().at("bn.running_mean"));
  EXPECT_EQ(dict.at("keys").toGenericDict().at(int64_t{0}).toStringRef(), "int");
  const auto list = dict.at("list").toListRef();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(torch_ext::value_kind(list[0]), torch_ext::ValueKind::Size);
}

TEST_F(CheckpointFileTest, PartialReadOfMissingKeysNamesThemAll) {
  torch_ext::write_checkpoint_file(file("ckpt.pt"), every_kind());
  try {
    torch_ext::read_checkpoint_file(file("ckpt.pt"), {true, {"model.nothing", "views.base", "nowhere"}});
    FAIL() << "expected a ValueError";
  } catch (const c10::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("has no entry 'model.nothing', 'nowhere'"), std::string::npos) << e.what();
  }
}

// The key path between the quotes after `entry '` in an error message.
std::string entry_path(const std::string& message) {
  const std::string start = "entry '";
  const size_t begin = message.find(start);
  if (begin == std::string::npos) {
    return "<no entry in: " + message + ">";
  }
  const size_t end = message.find('\'', begin + start.size());
  return message.substr(begin + start.size(), end - begin - start.size());
}

// {"model": {"layers": [1, {0: x}]}, "optim": {"state": {"0.weight": {"exp_avg": y}}}}: a
// list index, an int key and a key that holds a dot on the way.
GenericDict nested_state(const c10::IValue& x, const c10::IValue& y) {
  GenericDict item = any_dict();
  item.insert(int64_t{0}, x);
  GenericList layers(c10::AnyType::get());
  layers.push_back(int64_t{1});
  layers.push_back(item);
  GenericDict model = any_dict();
  model.insert("layers", layers);
  GenericDict exp_avg = any_dict();
  exp_avg.insert("exp_avg", y);
  GenericDict per_param = any_dict();
  per_param.insert("0.weight", exp_avg);
  GenericDict optim = any_dict();
  optim.insert("state", per_param);
  GenericDict state = any_dict();
  state.insert("model", model);
  state.insert("optim", optim);
  return state;
}

TEST_F(CheckpointFileTest, TheKeyPathThatAnErrorNamesSelectsThatEntry) {
  const c10::IValue bad(c10::complex<double>(1, 2));
  const at::Tensor x = torch::randn({3});
  const at::Tensor y = torch::randn({2});
  torch_ext::write_checkpoint_file(file("ckpt.pt"), nested_state(x, y));
  for (const bool bad_x : {true, false}) {
    std::string path;
    try {
      torch_ext::write_checkpoint_file(file("bad.pt"), bad_x ? nested_state(bad, y) : nested_state(x, bad));
      FAIL() << "expected a TypeError";
    } catch (const c10::TypeError& e) {
      path = entry_path(e.what());
    }
    EXPECT_EQ(path, bad_x ? "model.layers.1.0" : "optim.state.0.weight.exp_avg");
    const auto selected = torch_ext::read_checkpoint_file(file("ckpt.pt"), {true, {path}}).toGenericDict();
    ASSERT_EQ(selected.size(), 1u);
    if (bad_x) {
      const auto layers = selected.at("model").toGenericDict().at("layers").toListRef();
      ASSERT_EQ(layers.size(), 1u); // item 1 only
      EXPECT_TRUE(layers[0].toGenericDict().at(int64_t{0}).toTensor().equal(x));
    } else {
      const auto state = selected.at("optim").toGenericDict().at("state").toGenericDict();
      EXPECT_TRUE(state.at("0.weight").toGenericDict().at("exp_avg").toTensor().equal(y));
    }
  }
}

TEST_F(CheckpointFileTest, TheKeyPathThatACorruptionErrorNamesLoadsThatEntryUnverified) {
  torch_ext::write_checkpoint_file(file("ckpt.pt"), nested_state(torch::zeros({64}), torch::zeros({64})));
  {
    // data/0 is the first tensor written, model.layers.1.0's; its zeros end
    // where data/1's local header starts.
    std::fstream f(file("ckpt.pt"), std::ios::in | std::ios::out | std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), {});
    const size_t next = bytes.find("ckpt/data/1");
    ASSERT_NE(next, std::string::npos);
    const size_t target = next - 30 - 16 - 128; // inside data/0's zeros
    ASSERT_EQ(bytes[target], 0);
    f.seekp(static_cast<std::streamoff>(target));
    f.put(1);
  }
  std::string path;
  try {
    torch_ext::read_checkpoint_file(file("ckpt.pt"));
    FAIL() << "expected a CRC32 error";
  } catch (const c10::Error& e) {
    path = entry_path(e.what());
  }
  EXPECT_EQ(path, "model.layers.1.0");
  const auto selected = torch_ext::read_checkpoint_file(file("ckpt.pt"), {false, {path}}).toGenericDict();
  const auto layers = selected.at("model").toGenericDict().at("layers").toListRef();
  ASSERT_EQ(layers.size(), 1u);
  EXPECT_FALSE(layers[0].toGenericDict().at(int64_t{0}).toTensor().equal(torch::zeros({64}))); // the damage
}

TEST_F(CheckpointFileTest, AFlippedBitInATensorRecordFailsNamingTheFileTheRecordAndTheKey) {
  GenericDict state = any_dict();
  state.insert("first", torch::zeros({64}));
  state.insert("second", torch::zeros({64}));
  torch_ext::write_checkpoint_file(file("ckpt.pt"), state);
  {
    // The last storage record ends just before its data descriptor and the
    // record "version" (64-byte aligned): flip a byte in the middle of the
    // zeros, found from the end of the file.
    std::fstream f(file("ckpt.pt"), std::ios::in | std::ios::out | std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), {});
    const size_t version = bytes.rfind("ckpt/version");
    const size_t local_version = bytes.rfind("ckpt/version", version - 1);
    ASSERT_NE(local_version, std::string::npos);
    const size_t target = local_version - 30 - 16 - 128; // inside second's zeros
    ASSERT_EQ(bytes[target], 0);
    f.seekp(static_cast<std::streamoff>(target));
    f.put(1);
  }
  try {
    torch_ext::read_checkpoint_file(file("ckpt.pt"));
    FAIL() << "expected a CRC32 error";
  } catch (const c10::Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("'" + file("ckpt.pt") + "'"), std::string::npos) << message;
    EXPECT_NE(message.find("record 'ckpt/data/1' (state_dict entry 'second') fails its CRC32 check"), std::string::npos)
        << message;
  }
  const auto unverified = torch_ext::read_checkpoint_file(file("ckpt.pt"), {false, {}});
  EXPECT_FALSE(unverified.toGenericDict().at("second").toTensor().equal(torch::zeros({64})));
}

TEST_F(CheckpointFileTest, AMissingFileIsNamed) {
  try {
    torch_ext::read_checkpoint_file(file("absent.pt"));
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open the checkpoint file '" + file("absent.pt") + "'"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(CheckpointFileTest, AStreamedWriteTakesThePlannedTensorsInTheFilesOrderAndWritesWhatAWholeWriteWrites) {
  using torch_ext::detail::planned_tensor;
  const at::Tensor weight = torch::randn({16, 8});
  const at::Tensor matrix = torch::randn({3, 4}).to(torch::kHalf);
  const at::Tensor held = torch::arange(5, torch::kInt64);
  const auto state = [&](bool planned) {
    GenericDict inner = any_dict();
    inner.insert("matrix", planned ? planned_tensor(torch::kHalf, {3, 4}) : matrix);
    inner.insert("held", held); // has its data: written from it
    GenericDict state = any_dict();
    state.insert("weight", planned ? planned_tensor(torch::kFloat32, {16, 8}) : weight);
    state.insert("inner", inner);
    state.insert("empty", planned ? planned_tensor(torch::kFloat32, {0, 4}) : torch::empty({0, 4}));
    state.insert("step", int64_t{7});
    return state;
  };
  // In folders of their own: the archive's records are named after the file.
  fs::create_directories(root() / "whole");
  fs::create_directories(root() / "streamed");
  torch_ext::write_checkpoint_file(file("whole/w.pt"), state(false));
  torch_ext::detail::TorchSaveFileWriter writer(file("streamed/w.pt"), state(true));
  EXPECT_EQ(writer.order(), (std::vector<std::string>{"weight", "inner.matrix"}));
  writer.write(weight);
  writer.write(matrix.t().contiguous().t()); // other strides: written in row-major order
  EXPECT_FALSE(fs::exists(file("streamed/w.pt")));
  writer.commit();
  EXPECT_TRUE(torch_ext_test::read_bytes(file("streamed/w.pt")) == torch_ext_test::read_bytes(file("whole/w.pt")));
}

TEST_F(CheckpointFileTest, AStreamedWriteRefusesATensorUnlikeItsPlanNamingItsKeyAndLeavesTheFileAsItWas) {
  GenericDict before = any_dict();
  before.insert("w", torch::ones({2}));
  torch_ext::write_checkpoint_file(file("w.pt"), before);
  const std::string bytes = torch_ext_test::read_bytes(file("w.pt"));
  GenericList layers(c10::AnyType::get());
  layers.push_back(torch_ext::detail::planned_tensor(torch::kFloat32, {4}));
  GenericDict state = any_dict();
  state.insert("layers", layers);
  {
    torch_ext::detail::TorchSaveFileWriter writer(file("w.pt"), state);
    for (const at::Tensor& wrong : {torch::zeros({4}, torch::kInt32), torch::zeros({5})}) {
      try {
        writer.write(wrong);
        FAIL() << "expected a ValueError";
      } catch (const c10::ValueError& e) {
        EXPECT_NE(std::string(e.what()).find("expected entry 'layers.0' as a CPU tensor of Float and 16 bytes"),
                  std::string::npos)
            << e.what();
      }
    }
    try {
      writer.commit();
      FAIL() << "expected a ValueError";
    } catch (const c10::ValueError& e) {
      EXPECT_NE(std::string(e.what()).find("is missing 1 of its tensors, from entry 'layers.0'"), std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(torch_ext_test::read_bytes(file("w.pt")), bytes);
  EXPECT_EQ(std::distance(fs::directory_iterator(root()), fs::directory_iterator()), 1);
}

} // namespace
