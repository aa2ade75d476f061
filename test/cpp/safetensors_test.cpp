// safetensors files and folders from C++: round trips of every dtype, the
// layout the safetensors package writes, CRC32s, partial reads, the
// streaming writers, what a file cannot hold, hostile headers, Hugging
// Face's sharded layout. Files written by the safetensors package itself
// are read in test/test_safetensors.py (through test/cpp/safetensors_tool).
#include <torch_ext/safetensors.h>

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_files.h"
#include "test_checks.h"
#include "test_values.h"

namespace {

using torch_ext_test::string_dict;
using torch_ext_test::error_of;

namespace fs = std::filesystem;
using c10::impl::GenericDict;

class SafetensorsTest : public torch_ext_test::TempFolderTest {};

using torch_ext_test::read_bytes;
using torch_ext_test::write_bytes;

// A file whose header is `json` (as given, unpadded) and whose data is `data`.
std::string file_bytes(const std::string& json, const std::string& data = "") {
  std::string bytes(8, '\0');
  uint64_t length = json.size();
  for (int i = 0; i < 8; ++i, length >>= 8) {
    bytes[i] = static_cast<char>(length & 0xff);
  }
  return bytes + json + data;
}

std::string header_json(const std::string& file) {
  const std::string bytes = read_bytes(file);
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) {
    length = (length << 8) | static_cast<unsigned char>(bytes[i]);
  }
  return bytes.substr(8, length);
}

bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) {
    return false;
  }
  const at::Tensor x = a.contiguous();
  const at::Tensor y = b.contiguous();
  return x.nbytes() == y.nbytes() && (x.nbytes() == 0 || std::memcmp(x.const_data_ptr(), y.const_data_ptr(), x.nbytes()) == 0);
}

// Random bytes viewed as `dtype`: every bit pattern, NaNs included.
at::Tensor random_of(c10::ScalarType dtype, std::vector<int64_t> shape) {
  int64_t bytes = c10::elementSize(dtype);
  for (const int64_t size : shape) {
    bytes *= size;
  }
  return torch::randint(0, 256, {bytes}, torch::kUInt8).view(dtype).reshape(shape);
}

// Every torch dtype safetensors holds.
const std::vector<c10::ScalarType> kDtypes = {
    torch::kFloat64, torch::kFloat32, torch::kFloat16, torch::kBFloat16, torch::kComplexFloat,
    torch::kBool, torch::kUInt8, torch::kInt8, torch::kInt16, torch::kInt32, torch::kInt64,
    torch::kUInt16, torch::kUInt32, torch::kUInt64, c10::ScalarType::Float8_e4m3fn,
    c10::ScalarType::Float8_e5m2, c10::ScalarType::Float8_e4m3fnuz, c10::ScalarType::Float8_e5m2fnuz,
    c10::ScalarType::Float8_e8m0fnu, c10::ScalarType::Float4_e2m1fn_x2,
};

TEST_F(SafetensorsTest, EveryDtypeRoundTripsBitwise) {
  GenericDict state = string_dict();
  for (const c10::ScalarType dtype : kDtypes) {
    const std::string name(c10::toString(dtype));
    state.insert(name, dtype == torch::kBool ? torch::randint(0, 2, {3, 5}).to(torch::kBool) : random_of(dtype, {3, 5}));
    if (dtype != c10::ScalarType::Float4_e2m1fn_x2) { // a 0-dim float4 pair has no safetensors shape
      state.insert(name + ".scalar", dtype == torch::kBool ? torch::tensor(true) : random_of(dtype, {}));
    }
    state.insert(name + ".empty", torch::empty({0, 4}, torch::TensorOptions().dtype(dtype)));
  }
  const std::string file = path("all.safetensors");
  torch_ext::write_safetensors_file(file, state);

  const torch_ext::SafetensorsFile read(file);
  EXPECT_TRUE(read.unverifiable().empty());
  const GenericDict loaded = read.load();
  ASSERT_EQ(loaded.size(), state.size());
  for (const auto& entry : state) {
    const at::Tensor& expected = entry.value().toTensor();
    const at::Tensor got = loaded.at(entry.key()).toTensor();
    EXPECT_TRUE(same_bytes(expected, got)) << entry.key().toStringRef();
  }
  // F4's header shape counts elements, two per float4_e2m1fn_x2.
  EXPECT_EQ(read.info("Float4_e2m1fn_x2").shape, (std::vector<int64_t>{3, 10}));
  EXPECT_EQ(read.info("Float4_e2m1fn_x2").dtype, "F4");
}

TEST_F(SafetensorsTest, LayoutIsThePackagesWidestDtypeFirstThenByNameAlignedAndPadded) {
  GenericDict state = string_dict();
  state.insert("b", torch::ones({3}, torch::kFloat32));
  state.insert("a", torch::ones({3}, torch::kFloat32));
  state.insert("c", torch::ones({1}, torch::kUInt8));
  state.insert("d", torch::ones({2}, torch::kFloat64));
  state.insert("e", torch::ones({1}, torch::kBool));
  state.insert("f", torch::ones({2}, torch::kInt16));
  const std::string file = path("order.safetensors");
  torch_ext::write_safetensors_file(file, state, {{"note", "x"}});

  std::vector<std::string> names;
  const torch_ext::SafetensorsFile read(file);
  for (const torch_ext::SafetensorsTensorInfo& info : read.tensors()) {
    names.push_back(info.name);
    EXPECT_EQ(info.offset % c10::elementSize(*info.scalar_type), 0u) << info.name;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"d", "a", "b", "f", "c", "e"}));
  const std::string json = header_json(file);
  EXPECT_EQ(json.size() % 8, 0u);
  EXPECT_EQ(json.rfind("{\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\",\"torch_ext.crc32.d\":\"", 0), 0u) << json;
  EXPECT_NE(json.find("\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}"), std::string::npos) << json;
  EXPECT_EQ(json.find_last_not_of(' ') + 1, json.rfind('}') + 1);
  EXPECT_EQ(read.metadata(), (torch_ext::SafetensorsMetadata{{"format", "pt"}, {"note", "x"}}));
}

TEST_F(SafetensorsTest, TensorsAreCopyOnWriteViewsOfTheFile) {
  GenericDict state = string_dict();
  state.insert("w", torch::arange(16, torch::kFloat32));
  const std::string file = path("cow.safetensors");
  torch_ext::write_safetensors_file(file, state);
  const std::string before = read_bytes(file);
  {
    const torch_ext::SafetensorsFile read(file);
    at::Tensor w = read.tensor("w");
    const auto* begin = reinterpret_cast<const char*>(w.const_data_ptr());
    EXPECT_EQ(std::string(begin, 64), before.substr(read.info("w").offset, 64)); // the file's bytes
    w.add_(1);
    EXPECT_EQ(w[0].item<float>(), 1.0f);
  }
  EXPECT_EQ(read_bytes(file), before);
}

TEST_F(SafetensorsTest, KeysReadOnlyTheNamedTensors) {
  GenericDict state = string_dict();
  state.insert("model.fc.weight", torch::ones({2, 2}));
  state.insert("model.fc.bias", torch::zeros({2}));
  const std::string file = path("keys.safetensors");
  torch_ext::write_safetensors_file(file, state);
  // A flipped byte in the tensor not asked for goes unread, so unnoticed.
  std::string bytes = read_bytes(file);
  const torch_ext::SafetensorsFile before(file);
  bytes[before.info("model.fc.weight").offset] ^= 1;
  write_bytes(file, bytes);

  const torch_ext::SafetensorsFile read(file);
  const GenericDict part = read.load({true, {"model.fc.bias"}});
  ASSERT_EQ(part.size(), 1u);
  EXPECT_TRUE(part.at("model.fc.bias").toTensor().equal(torch::zeros({2})));
  const std::string error = error_of([&] { read.load({true, {"model.fc", "nope"}}); });
  EXPECT_NE(error.find("'" + file + "' has no entry 'model.fc', 'nope'"), std::string::npos) << error;
}

TEST_F(SafetensorsTest, AFlippedBitFailsItsCrcNamingTheFileAndTheTensor) {
  GenericDict state = string_dict();
  state.insert("a", torch::arange(1000, torch::kFloat32));
  state.insert("b", torch::ones({10}, torch::kInt64));
  const std::string file = path("flip.safetensors");
  torch_ext::write_safetensors_file(file, state);
  std::string bytes = read_bytes(file);
  const uint64_t offset = torch_ext::SafetensorsFile(file).info("a").offset;
  bytes[offset + 1234] ^= 0x10;
  write_bytes(file, bytes);

  const torch_ext::SafetensorsFile read(file);
  const std::string error = error_of([&] { read.load(); });
  EXPECT_NE(error.find("the safetensors file '" + file + "'"), std::string::npos) << error;
  EXPECT_NE(error.find("tensor 'a' fails its CRC32 check"), std::string::npos) << error;
  const torch_ext::SafetensorsVerification verification = read.verify();
  ASSERT_EQ(verification.failed.size(), 1u);
  EXPECT_EQ(verification.failed[0].name, "a");
  EXPECT_EQ(verification.verified, std::vector<std::string>{"b"});
  EXPECT_FALSE(verification.ok());
  // Unverified, the damaged value is read as it is.
  EXPECT_FALSE(read.tensor("a", false).equal(torch::arange(1000, torch::kFloat32)));
}

TEST_F(SafetensorsTest, AFileWithoutOurCrcsSaysWhatCannotBeVerified) {
  const std::string file = path("plain.safetensors");
  std::string data(8, '\0');
  const float values[2] = {1.5f, -2.0f};
  std::memcpy(data.data(), values, 8);
  write_bytes(file, file_bytes(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data));
  const torch_ext::SafetensorsFile read(file);
  EXPECT_EQ(read.unverifiable(), std::vector<std::string>{"x"});
  EXPECT_FALSE(read.info("x").crc32.has_value());
  const torch_ext::SafetensorsVerification verification = read.verify();
  EXPECT_TRUE(verification.ok());
  EXPECT_TRUE(verification.verified.empty());
  EXPECT_EQ(verification.unverifiable, std::vector<std::string>{"x"});
  EXPECT_TRUE(read.tensor("x").equal(torch::tensor({1.5f, -2.0f})));
}

TEST_F(SafetensorsTest, UnalignedTensorsOfOtherWritersAreCopied) {
  const std::string file = path("unaligned.safetensors");
  std::string data(5, '\0');
  const float value = 3.25f;
  std::memcpy(data.data() + 1, &value, 4);
  write_bytes(file, file_bytes(
      R"({"u":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"f":{"dtype":"F32","shape":[1],"data_offsets":[1,5]}})",
      data));
  const at::Tensor f = torch_ext::SafetensorsFile(file).tensor("f");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.const_data_ptr()) % 4, 0u);
  EXPECT_EQ(f.item<float>(), 3.25f);
}

TEST_F(SafetensorsTest, WhatTheFormatCannotHoldIsRefusedNamingTheEntryBeforeAnyFile) {
  const std::string file = path("refused.safetensors");
  const auto refused = [&](const c10::IValue& state, const std::string& expected) {
    const std::string error = error_of([&] { torch_ext::write_safetensors_file(file, state); });
    EXPECT_NE(error.find(expected), std::string::npos) << error;
    EXPECT_FALSE(fs::exists(file));
    EXPECT_TRUE(fs::is_empty(root())) << "a temporary file was left";
  };
  GenericDict nested = string_dict();
  nested.insert("model", string_dict());
  refused(nested, "entry 'model' is a dict (flatten nested dicts");
  GenericDict scalar = string_dict();
  scalar.insert("step", int64_t{3});
  refused(scalar, "entry 'step' is an int");
  GenericDict complex = string_dict();
  complex.insert("z", torch::zeros({2}, torch::kComplexDouble));
  refused(complex, "entry 'z' is a ComplexDouble tensor, which safetensors has no dtype for");
  const at::Tensor weight = torch::ones({4, 4});
  GenericDict tied = string_dict();
  tied.insert("embed.weight", weight);
  tied.insert("lm_head.weight", weight);
  refused(tied, "entries 'embed.weight' and 'lm_head.weight' share memory");
  GenericDict overlapping = string_dict();
  overlapping.insert("all", weight);
  overlapping.insert("row", weight[2]);
  refused(overlapping, "share memory");
  refused(c10::IValue(torch::ones({2})), "the state_dict is");

  // Disjoint views of one storage are not shared memory: written, each its own bytes.
  GenericDict disjoint = string_dict();
  disjoint.insert("top", weight.slice(0, 0, 2));
  disjoint.insert("bottom", weight.slice(0, 2, 4));
  disjoint.insert("column", torch::arange(12.0).reshape({3, 4}).select(1, 1)); // non-contiguous
  torch_ext::write_safetensors_file(file, disjoint);
  const GenericDict loaded = torch_ext::SafetensorsFile(file).load();
  EXPECT_TRUE(loaded.at("column").toTensor().equal(torch::tensor({1.0f, 5.0f, 9.0f})));
  EXPECT_TRUE(loaded.at("top").toTensor().equal(torch::ones({2, 4})));
}

TEST_F(SafetensorsTest, TheStreamingWriterTakesTensorsInItsOrderAndLeavesNothingUncommitted) {
  const std::string file = path("stream.safetensors");
  const std::vector<torch_ext::SafetensorsEntry> entries = {
      {"small", torch::kUInt8, {3}}, {"big", torch::kFloat64, {2, 2}}, {"mid", torch::kFloat32, {5}}};
  {
    torch_ext::SafetensorsWriter writer(file, entries);
    ASSERT_EQ(writer.order().size(), 3u);
    EXPECT_EQ(writer.order()[0].name, "big");
    EXPECT_EQ(writer.order()[2].name, "small");
    const std::string error = error_of([&] { writer.write(torch::zeros({5})); });
    EXPECT_NE(error.find("its next tensor is 'big'"), std::string::npos) << error;
    writer.write(torch::ones({2, 2}, torch::kFloat64));
    const std::string early = error_of([&] { writer.commit(); });
    EXPECT_NE(early.find("commit() before its tensor 'mid'"), std::string::npos) << early;
  }
  EXPECT_TRUE(fs::is_empty(root())) << "an uncommitted writer left a file";

  torch_ext::SafetensorsWriter writer(file, entries);
  writer.write(torch::ones({2, 2}, torch::kFloat64));
  writer.write(torch::arange(5, torch::kFloat32));
  writer.write(torch::tensor({7, 8, 9}, torch::kUInt8));
  EXPECT_FALSE(fs::exists(file));
  writer.commit();
  const torch_ext::SafetensorsFile read(file);
  EXPECT_TRUE(read.verify().ok());
  EXPECT_EQ(read.verify().verified.size(), 3u);
  EXPECT_TRUE(read.tensor("small").equal(torch::tensor({7, 8, 9}, torch::kUInt8)));
}

// Each case: the bytes of a file, and what its error must say.
struct Hostile {
  std::string what;
  std::string bytes;
  std::string expected;
};

std::vector<Hostile> hostile_files() {
  const std::string f32 = R"("dtype":"F32","shape":[2],)";
  const std::string eight(8, '\0');
  std::string huge(8, '\xff');
  std::string deep = R"({"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":)";
  for (int i = 0; i < 10000; ++i) {
    deep += "[";
  }
  return {
      {"shorter than its length", "abc", "too short for the header's length"},
      {"a huge length", huge + "{}", "beyond the format's 100000000"},
      {"a length past the end", file_bytes("{}").substr(0, 8) + "{", "only 1 follow"},
      {"not JSON", file_bytes("{\"x\":"), "not valid JSON"},
      {"a JSON array", file_bytes("[]"), "not a JSON object"},
      {"trailing bytes", file_bytes("{} x"), "not valid JSON"},
      {"an unknown dtype", file_bytes(R"({"x":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})", std::string(16, '\0')),
       "dtype 'F128', which the format does not know"},
      {"overlapping offsets",
       file_bytes("{\"a\":{" + f32 + R"("data_offsets":[0,8]},"b":{)" + f32 + R"("data_offsets":[4,12]}})", std::string(12, '\0')),
       "it overlaps the tensor before it"},
      {"a hole", file_bytes("{\"a\":{" + f32 + R"("data_offsets":[8,16]}})", std::string(16, '\0')), "leaving a hole"},
      {"offsets past the end", file_bytes("{\"a\":{" + f32 + R"("data_offsets":[0,8]}})", "1234"), "(truncated?)"},
      {"bytes after the last tensor", file_bytes("{\"a\":{" + f32 + R"("data_offsets":[0,8]}})", eight + "x"),
       "the file has 9 bytes there"},
      {"a size that does not match the shape", file_bytes("{\"a\":{" + f32 + R"("data_offsets":[0,4]}})", "1234"),
       "8 bytes, but its data_offsets [0, 4] span 4"},
      {"an end before the start",
       file_bytes("{\"a\":{" + f32 + R"("data_offsets":[8,0]},"b":{)" + f32 + R"("data_offsets":[0,8]}})", eight),
       "it ends before it starts"},
      {"a duplicate key",
       file_bytes("{\"a\":{" + f32 + R"("data_offsets":[0,8]},"a":{)" + f32 + R"("data_offsets":[0,8]}})", eight),
       "the key 'a' twice"},
      {"a duplicate metadata key", file_bytes(R"({"__metadata__":{"k":"1","k":"2"}})"), "__metadata__ has the key 'k' twice"},
      {"a duplicate field", file_bytes(R"({"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x"),
       "its field 'dtype' twice"},
      {"a missing field", file_bytes(R"({"a":{"dtype":"U8","shape":[1]}})"), "has no data_offsets"},
      {"metadata that is no string", file_bytes(R"({"__metadata__":{"k":1}})"), "entry 'k' is a number, not a string"},
      {"a negative dimension", file_bytes(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})"), "a negative number in its shape"},
      {"a fractional dimension", file_bytes(R"({"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,0]}})"), "in its shape"},
      {"three offsets", file_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}})", "x"), "more than two data_offsets"},
      {"an overflowing shape",
       file_bytes(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,0]}})"),
       "overflows 64 bits"},
      {"a dimension beyond int64", file_bytes(R"({"a":{"dtype":"U8","shape":[18446744073709551615,0],"data_offsets":[0,0]}})"),
       "beyond what a tensor can hold"},
      {"bits that are no whole bytes", file_bytes(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}})", "x"),
       "12 bits, not a whole number of bytes"},
      {"deep nesting", file_bytes(deep), "nests deeper than 16 levels"},
      {"non-UTF-8 in a name", file_bytes("{\"\xff\xfe\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", "x"),
       "not valid JSON"},
      {"a lone surrogate", file_bytes(R"({"\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x"), "not valid JSON"},
      {"a tensor that is no object", file_bytes(R"({"a":[1,2]})"), "entry 'a' is an array, not an object describing a tensor"},
      {"a CRC32 for no tensor", file_bytes(R"({"__metadata__":{"torch_ext.crc32.ghost":"00000000"}})"),
       "a CRC32 for 'ghost', which is no tensor of it"},
      {"a malformed CRC32",
       file_bytes(R"({"__metadata__":{"torch_ext.crc32.a":"xyz"},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x"),
       "'xyz', not a CRC32 of 8 hex digits"},
  };
}

TEST_F(SafetensorsTest, HostileHeadersAreRefusedNamingTheFile) {
  const std::string file = path("hostile.safetensors");
  for (const Hostile& hostile : hostile_files()) {
    write_bytes(file, hostile.bytes);
    const std::string error = error_of([&] { torch_ext::SafetensorsFile{file}; });
    EXPECT_NE(error.find("the safetensors file '" + file + "' is corrupted or is not a safetensors file"), std::string::npos)
        << hostile.what << ": " << error;
    EXPECT_NE(error.find(hostile.expected), std::string::npos) << hostile.what << ": " << error;
  }
}

TEST_F(SafetensorsTest, WhatTheRustCrateAcceptsIsRead) {
  const std::string file = path("accepted.safetensors");
  // No tensors; metadata null; unknown fields ignored; empty tensors at one
  // offset; keys in any order; whitespace.
  for (const std::string& json : {
           std::string("{}"),
           std::string(R"({"__metadata__":null})"),
           std::string(R"( { "b" : {"dtype":"U8","shape":[1],"data_offsets":[1,2]},)"
                       R"( "a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":{"deep":[1,{"x":null}]}},)"
                       R"( "e":{"dtype":"F32","shape":[0,3],"data_offsets":[2,2]} }   )"),
       }) {
    write_bytes(file, file_bytes(json, json.size() > 30 ? "xy" : ""));
    const torch_ext::SafetensorsFile read(file);
    if (json.size() > 30) {
      std::vector<std::string> names;
      for (const auto& info : read.tensors()) {
        names.push_back(info.name);
      }
      EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "e"}));
      EXPECT_EQ(read.tensor("b").item<uint8_t>(), 'y');
      EXPECT_EQ(read.tensor("e").sizes(), (std::vector<int64_t>{0, 3}));
    } else {
      EXPECT_TRUE(read.tensors().empty());
    }
  }
}

GenericDict model_like() {
  GenericDict state = string_dict();
  state.insert("embed.weight", torch::randn({64, 16})); // 4096 bytes
  for (int i = 0; i < 3; ++i) {
    state.insert("layers." + std::to_string(i) + ".weight", torch::randn({16, 16})); // 1024 bytes
    state.insert("layers." + std::to_string(i) + ".bias", torch::randn({16}, torch::kBFloat16));
  }
  state.insert("norm.weight", torch::ones({16}));
  return state;
}

TEST_F(SafetensorsTest, AFolderIsShardedAsHuggingFaceHubShardsIt) {
  const std::string folder = path("model");
  const GenericDict state = model_like();
  torch_ext::write_safetensors_folder(folder, state, 2100, {{"source", "test"}});
  // 4096 alone (larger than the bound), then in order: 1024+32+1024, 32+1024+32+64.
  const std::vector<std::string> expected = {
      "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"};
  for (const std::string& name : expected) {
    EXPECT_TRUE(fs::exists(fs::path(folder) / name)) << name;
  }
  const torch_ext::SafetensorsFolder read(folder);
  ASSERT_EQ(read.shards().size(), 3u);
  EXPECT_EQ(read.shard_of("embed.weight").path(), (fs::path(folder) / expected[0]).string());
  EXPECT_EQ(read.shard_of("layers.0.bias").path(), (fs::path(folder) / expected[1]).string());
  EXPECT_EQ(read.shard_of("layers.1.bias").path(), (fs::path(folder) / expected[2]).string());
  EXPECT_EQ(read.shard_of("layers.2.weight").path(), (fs::path(folder) / expected[2]).string());
  EXPECT_EQ(read.total_size(), 4096u + 3 * 1024 + 3 * 32 + 64);
  const auto& metadata = read.index_metadata();
  EXPECT_NE(std::find(metadata.begin(), metadata.end(), std::pair<std::string, std::string>{"source", "\"test\""}),
            metadata.end());
  EXPECT_EQ(read.shards()[0].metadata(), (torch_ext::SafetensorsMetadata{{"format", "pt"}}));
  const GenericDict loaded = read.load();
  ASSERT_EQ(loaded.size(), state.size());
  for (const auto& entry : state) {
    EXPECT_TRUE(same_bytes(entry.value().toTensor(), loaded.at(entry.key()).toTensor())) << entry.key().toStringRef();
  }
  EXPECT_EQ(read.verify().verified.size(), state.size());
  const GenericDict part = read.load({true, {"norm.weight"}});
  EXPECT_EQ(part.size(), 1u);

  // Saved again in one shard: the lone file, and the shards and index gone.
  fs::path other = fs::path(folder) / "notes.txt";
  write_bytes(other.string(), "kept");
  torch_ext::write_safetensors_folder(folder, state);
  std::vector<std::string> left;
  for (const auto& entry : fs::directory_iterator(folder)) {
    left.push_back(entry.path().filename().string());
  }
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"model.safetensors", "notes.txt"}));
  EXPECT_EQ(torch_ext::SafetensorsFolder(folder).shards()[0].metadata(),
            (torch_ext::SafetensorsMetadata{{"format", "pt"}}));
  EXPECT_EQ(torch_ext::SafetensorsFolder(folder).load().size(), state.size());
}

TEST_F(SafetensorsTest, AnIndexThatDisagreesWithItsShardsIsRefused) {
  const std::string folder = path("model");
  torch_ext::write_safetensors_folder(folder, model_like(), 2100);
  const std::string index = (fs::path(folder) / torch_ext::kSafetensorsIndexName).string();
  const std::string good = read_bytes(index);
  const auto refused = [&](const std::string& from, const std::string& to, const std::string& expected) {
    std::string text = good;
    const size_t at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    write_bytes(index, text);
    const std::string error = error_of([&] { torch_ext::SafetensorsFolder{folder}; });
    EXPECT_NE(error.find("'" + index + "'"), std::string::npos) << error;
    EXPECT_NE(error.find(expected), std::string::npos) << error;
  };
  refused("\"norm.weight\": \"model-00003-of-00003", "\"norm.weight\": \"model-00002-of-00003", "holds tensor 'norm.weight'");
  refused("\"norm.weight\": \"model-00003-of-00003.safetensors\"", "\"norm.weight\": \"../model-00003-of-00003.safetensors\"",
          "not the name of a file in its folder");
  refused("\"norm.weight\":", "\"ghost\": \"model-00003-of-00003.safetensors\", \"norm.weight\":", "'ghost'");
  refused("\"norm.weight\": \"model-00003-of-00003.safetensors\"", "\"norm.weight\": \"model-00009-of-00009.safetensors\"",
          "which its folder does not hold");
  refused("\"weight_map\"", "\"weight_mop\"", "no weight_map");
  refused("\"norm.weight\":", "\"embed.weight\": \"model-00001-of-00003.safetensors\", \"norm.weight\":", "twice");

  // A save cut short: its index removed first, so the folder reads as incomplete.
  fs::remove(index);
  const std::string error = error_of([&] { torch_ext::SafetensorsFolder{folder}; });
  EXPECT_NE(error.find("holds neither model.safetensors.index.json nor model.safetensors"), std::string::npos) << error;
}

TEST_F(SafetensorsTest, TheFolderWriterStreamsShardByShard) {
  const std::string folder = path("stream");
  std::vector<torch_ext::SafetensorsEntry> entries;
  for (int i = 0; i < 4; ++i) {
    entries.push_back({"t" + std::to_string(i), torch::kFloat32, {256}}); // 1024 bytes each
  }
  torch_ext::SafetensorsFolderWriter writer(folder, entries, 2048);
  ASSERT_EQ(writer.shards().size(), 2u);
  EXPECT_EQ(writer.shards()[1].second, (std::vector<std::string>{"t2", "t3"}));
  for (const torch_ext::SafetensorsEntry& entry : writer.order()) {
    writer.write(torch::full({256}, static_cast<float>(entry.name[1] - '0')));
  }
  // The shards are on disk before the index, which commit() writes last.
  EXPECT_TRUE(fs::exists(fs::path(folder) / "model-00002-of-00002.safetensors"));
  EXPECT_FALSE(fs::exists(fs::path(folder) / torch_ext::kSafetensorsIndexName));
  writer.commit();
  EXPECT_TRUE(torch_ext::SafetensorsFolder(folder).tensor("t3").equal(torch::full({256}, 3.0f)));
}

} // namespace
