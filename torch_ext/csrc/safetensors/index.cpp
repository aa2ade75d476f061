#include "index.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <unordered_set>

#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include "header.h"

namespace torch_ext::detail {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxIndexDepth = 32;

[[noreturn]] void fail_index(const std::string& file, const std::string& what) {
  TORCH_CHECK(false, "the safetensors index '", file, "' is corrupted or is not an index: ", what);
}

// A SAX pass before the parse that builds values: refuses a key given twice
// in an object (nlohmann keeps the last) and nesting that a value's
// recursive destruction would not bear.
class IndexChecker {
 public:
  std::string error;

  bool null() {
    return true;
  }
  bool boolean(bool /*value*/) {
    return true;
  }
  bool number_integer(Json::number_integer_t /*value*/) {
    return true;
  }
  bool number_unsigned(Json::number_unsigned_t /*value*/) {
    return true;
  }
  bool number_float(Json::number_float_t /*value*/, const Json::string_t& /*text*/) {
    return true;
  }
  bool string(Json::string_t& /*value*/) {
    return true;
  }
  bool binary(Json::binary_t& /*value*/) {
    return true;
  }
  bool start_object(std::size_t /*size*/) {
    keys_.emplace_back();
    return enter();
  }
  bool end_object() {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(std::size_t /*size*/) {
    keys_.emplace_back(); // arrays have no keys; keeps keys_ in step with depth_
    return enter();
  }
  bool end_array() {
    return end_object();
  }
  bool key(Json::string_t& key) {
    if (!keys_.back().insert(key).second) {
      error = "it has the key '" + key + "' twice in one object";
      return false;
    }
    return true;
  }
  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/, const nlohmann::detail::exception& e) {
    if (error.empty()) {
      std::string message = e.what();
      for (char& c : message) {
        c = static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f ? c : '?';
      }
      error = "it is not valid JSON (" + message + ")";
    }
    return false;
  }

 private:
  bool enter() {
    if (++depth_ > kMaxIndexDepth) {
      error = "it nests deeper than " + std::to_string(kMaxIndexDepth) + " levels";
      return false;
    }
    return true;
  }

  size_t depth_ = 0;
  std::vector<std::unordered_set<std::string>> keys_;
};

std::string read_text(const std::string& file) {
  std::error_code error;
  const uint64_t size = std::filesystem::file_size(file, error);
  TORCH_CHECK(!error, "cannot read the safetensors index '", file, "': ", error.message());
  if (size > kMaxHeaderBytes) {
    fail_index(file, "it is " + std::to_string(size) + " bytes long, beyond the " + std::to_string(kMaxHeaderBytes) +
                         " an index may take");
  }
  std::ifstream in(file, std::ios::binary);
  TORCH_CHECK(in, "cannot open the safetensors index '", file, "'");
  std::string text(size, '\0');
  in.read(text.data(), static_cast<std::streamsize>(size));
  TORCH_CHECK(in.gcount() == static_cast<std::streamsize>(size), "cannot read the safetensors index '", file, "'");
  return text;
}

bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
      name.find('\0') == std::string::npos;
}

std::string json_string(const std::string& text) {
  try {
    return Json(text).dump(-1, ' ', true);
  } catch (const Json::type_error&) {
    TORCH_CHECK_VALUE(
        false,
        "'",
        Json(text).dump(-1, ' ', true, Json::error_handler_t::replace),
        "' is not valid UTF-8, which a safetensors index must be");
  }
  return {}; // unreachable
}

} // namespace

std::string shard_name(size_t shard, size_t shards) {
  char name[64];
  std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", shard + 1, shards);
  return name;
}

bool is_layout_file(const std::string& name) {
  static const std::regex layout(R"(model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?)");
  return std::regex_match(name, layout);
}

Index read_index(const std::string& file) {
  const std::string text = read_text(file);
  IndexChecker checker;
  if (!Json::sax_parse(text, &checker)) {
    fail_index(file, checker.error);
  }
  const Json root = Json::parse(text);
  if (!root.is_object()) {
    fail_index(file, "it is not a JSON object");
  }
  Index index;
  const auto weight_map = root.find("weight_map");
  if (weight_map == root.end() || !weight_map->is_object()) {
    fail_index(file, "it has no weight_map object, which maps each tensor to its shard");
  }
  for (const auto& [name, shard] : weight_map->items()) {
    if (!shard.is_string() || !is_plain_file_name(shard.get_ref<const std::string&>())) {
      fail_index(file, "its weight_map gives " + shard.dump(-1, ' ', true) + " for tensor '" + name +
                           "', not the name of a file in its folder");
    }
    index.weight_map.emplace_back(name, shard.get<std::string>());
  }
  const auto metadata = root.find("metadata");
  if (metadata != root.end() && !metadata->is_null()) {
    if (!metadata->is_object()) {
      fail_index(file, "its metadata is not an object");
    }
    for (const auto& [key, value] : metadata->items()) {
      index.metadata.emplace_back(key, value.dump(-1, ' ', true));
      if (key == "total_size" && value.is_number_unsigned()) {
        index.total_size = value.get<uint64_t>();
      }
    }
  }
  return index;
}

std::string index_text(
    uint64_t total_size,
    const std::vector<std::pair<std::string, std::string>>& metadata,
    const std::vector<std::pair<std::string, std::string>>& weight_map) {
  std::string text = "{\n  \"metadata\": {\n    \"total_size\": " + std::to_string(total_size);
  for (const auto& [key, value] : metadata) {
    text += ",\n    " + json_string(key) + ": " + json_string(value);
  }
  text += "\n  },\n  \"weight_map\": {";
  for (size_t i = 0; i < weight_map.size(); ++i) {
    text += std::string(i ? "," : "") + "\n    " + json_string(weight_map[i].first) + ": " +
        json_string(weight_map[i].second);
  }
  text += weight_map.empty() ? "}\n}\n" : "\n  }\n}\n";
  return text;
}

} // namespace torch_ext::detail
