#include "header.h"

#include <algorithm>
#include <limits>
#include <tuple>
#include <unordered_set>

#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include "torch_ext/csrc/io/little_endian.h"

namespace torch_ext::detail {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kMetadataKey = "__metadata__";
// The root object, a tensor's object, its shape: deeper values are only
// unknown fields of a tensor, which the Rust crate ignores, as we do, up to
// this depth.
constexpr size_t kMaxDepth = 16;

// nlohmann's messages quote what they read: keep them printable ASCII.
std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    out += byte >= 0x20 && byte < 0x7f ? c : '?';
  }
  return out;
}

std::string in_quotes(const std::string& name) {
  return "'" + name + "'";
}

// A SAX handler (nlohmann's interface) that reads the header into a Header
// as it parses, refusing at the first event that breaks a rule: nothing is
// built beyond what the Header keeps, however the JSON nests.
class HeaderHandler {
 public:
  explicit HeaderHandler(Header& header) : header_(header) {}

  const std::string& error() const {
    return error_;
  }

  bool null() {
    if (place_ == Place::Root && key_ == kMetadataKey) {
      return true; // Option<HashMap>: null is none
    }
    return scalar("null");
  }
  bool boolean(bool /*value*/) {
    return scalar("a boolean");
  }
  bool number_integer(Json::number_integer_t /*value*/) {
    return scalar("a negative number");
  }
  bool number_float(Json::number_float_t /*value*/, const Json::string_t& /*text*/) {
    return scalar("a number that is no integer of 64 bits");
  }
  bool binary(Json::binary_t& /*value*/) {
    return scalar("binary");
  }

  bool number_unsigned(Json::number_unsigned_t value) {
    if (place_ == Place::Shape) {
      if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return refuse("tensor " + in_quotes(tensor_.name) + " has a dimension of " + std::to_string(value) +
                      ", beyond what a tensor can hold");
      }
      tensor_.shape.push_back(static_cast<int64_t>(value));
      return true;
    }
    if (place_ == Place::Offsets) {
      if (offsets_ == 2) {
        return refuse("tensor " + in_quotes(tensor_.name) + " has more than two data_offsets");
      }
      (offsets_++ == 0 ? tensor_.begin : tensor_.end) = value;
      return true;
    }
    return scalar("a number");
  }

  bool string(Json::string_t& value) {
    if (place_ == Place::Metadata) {
      header_.metadata.emplace_back(std::move(key_), std::move(value));
      return true;
    }
    if (place_ == Place::Tensor && field_ == Field::Dtype) {
      tensor_.dtype = safetensors_dtype(value);
      if (tensor_.dtype == nullptr) {
        return refuse("tensor " + in_quotes(tensor_.name) + " has dtype '" + value + "', which the format does not know");
      }
      return true;
    }
    return scalar("a string");
  }

  bool start_object(std::size_t /*size*/) {
    if (!enter()) {
      return false;
    }
    switch (place_) {
      case Place::Start:
        place_ = Place::Root;
        return true;
      case Place::Root:
        if (key_ == kMetadataKey) {
          place_ = Place::Metadata;
          metadata_keys_.clear();
          return true;
        }
        tensor_ = HeaderTensor{};
        tensor_.name = std::move(key_);
        fields_seen_ = 0;
        place_ = Place::Tensor;
        return true;
      case Place::Tensor:
        if (field_ == Field::Unknown) {
          return skip();
        }
        return scalar("an object");
      case Place::Skip:
        return true;
      default:
        return scalar("an object");
    }
  }

  bool start_array(std::size_t /*size*/) {
    if (!enter()) {
      return false;
    }
    if (place_ == Place::Tensor) {
      if (field_ == Field::Shape) {
        place_ = Place::Shape;
        return true;
      }
      if (field_ == Field::Offsets) {
        place_ = Place::Offsets;
        offsets_ = 0;
        return true;
      }
      if (field_ == Field::Unknown) {
        return skip();
      }
    }
    if (place_ == Place::Skip) {
      return true;
    }
    return scalar("an array");
  }

  bool key(Json::string_t& key) {
    switch (place_) {
      case Place::Root:
        if (!names_.insert(key).second) {
          return refuse("its header has the key '" + key + "' twice");
        }
        key_ = std::move(key);
        return true;
      case Place::Metadata:
        if (!metadata_keys_.insert(key).second) {
          return refuse("its __metadata__ has the key '" + key + "' twice");
        }
        key_ = std::move(key);
        return true;
      case Place::Tensor:
        return tensor_field(key);
      default:
        return true; // Skip
    }
  }

  bool end_object() {
    --depth_;
    switch (place_) {
      case Place::Root:
        place_ = Place::Done;
        return true;
      case Place::Metadata:
        place_ = Place::Root;
        return true;
      case Place::Tensor:
        return end_tensor();
      default: // Skip
        return leave_skip();
    }
  }

  bool end_array() {
    --depth_;
    if (place_ == Place::Shape) {
      place_ = Place::Tensor;
      return true;
    }
    if (place_ == Place::Offsets) {
      place_ = Place::Tensor;
      if (offsets_ != 2) {
        return refuse("tensor " + in_quotes(tensor_.name) + " has " + std::to_string(offsets_) +
                      " data_offsets, where it needs two: [begin, end]");
      }
      return true;
    }
    return leave_skip();
  }

  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/, const nlohmann::detail::exception& e) {
    if (error_.empty()) {
      error_ = "its header is not valid JSON (" + printable(e.what()) + ")";
    }
    return false;
  }

 private:
  enum class Place { Start, Root, Metadata, Tensor, Shape, Offsets, Skip, Done };
  enum class Field { None, Dtype, Shape, Offsets, Unknown };

  bool refuse(std::string what) {
    error_ = std::move(what);
    return false;
  }

  bool enter() {
    if (++depth_ > kMaxDepth) {
      return refuse("its header nests deeper than " + std::to_string(kMaxDepth) + " levels");
    }
    return true;
  }

  // A value where the format has none of its kind.
  bool scalar(const std::string& what) {
    switch (place_) {
      case Place::Start:
        return refuse("its header is " + what + ", not a JSON object");
      case Place::Root:
        if (key_ == kMetadataKey) {
          return refuse("its __metadata__ is " + what + ", not an object of strings");
        }
        return refuse("its header's entry '" + key_ + "' is " + what + ", not an object describing a tensor");
      case Place::Metadata:
        return refuse("its __metadata__ entry '" + key_ + "' is " + what + ", not a string");
      case Place::Tensor:
        if (field_ == Field::Unknown) {
          return true; // an unknown field's value, ignored
        }
        return refuse("tensor " + in_quotes(tensor_.name) + " has " + what + " for its " + field_name() + ", not " +
                      (field_ == Field::Dtype ? "a dtype name" : "a list of integers"));
      case Place::Shape:
        return refuse("tensor " + in_quotes(tensor_.name) + " has " + what + " in its shape, not a dimension");
      case Place::Offsets:
        return refuse("tensor " + in_quotes(tensor_.name) + " has " + what + " in its data_offsets, not an offset");
      default:
        return true; // Skip
    }
  }

  const char* field_name() const {
    switch (field_) {
      case Field::Dtype:
        return "dtype";
      case Field::Shape:
        return "shape";
      default:
        return "data_offsets";
    }
  }

  bool tensor_field(const std::string& key) {
    field_ = key == "dtype" ? Field::Dtype
        : key == "shape"    ? Field::Shape
        : key == "data_offsets" ? Field::Offsets
                                : Field::Unknown;
    if (field_ == Field::Unknown) {
      return true;
    }
    const unsigned bit = 1u << static_cast<unsigned>(field_);
    if ((fields_seen_ & bit) != 0) {
      return refuse("tensor " + in_quotes(tensor_.name) + " has its field '" + key + "' twice");
    }
    fields_seen_ |= bit;
    return true;
  }

  bool end_tensor() {
    for (const Field field : {Field::Dtype, Field::Shape, Field::Offsets}) {
      if ((fields_seen_ & (1u << static_cast<unsigned>(field))) == 0) {
        field_ = field;
        return refuse("tensor " + in_quotes(tensor_.name) + " has no " + field_name());
      }
    }
    header_.tensors.push_back(std::move(tensor_));
    place_ = Place::Root;
    field_ = Field::None;
    return true;
  }

  // Enters the value of an unknown field of a tensor, an object or an array.
  bool skip() {
    place_ = Place::Skip;
    skip_depth_ = depth_;
    return true;
  }

  bool leave_skip() {
    if (place_ == Place::Skip && depth_ < skip_depth_) {
      place_ = Place::Tensor;
    }
    return true;
  }

  Header& header_;
  Place place_ = Place::Start;
  Field field_ = Field::None;
  size_t depth_ = 0;
  size_t skip_depth_ = 0;
  std::string key_;
  HeaderTensor tensor_;
  unsigned fields_seen_ = 0;
  int offsets_ = 0;
  std::unordered_set<std::string> names_;
  std::unordered_set<std::string> metadata_keys_;
  std::string error_;
};

std::string offsets_text(const HeaderTensor& tensor) {
  return "[" + std::to_string(tensor.begin) + ", " + std::to_string(tensor.end) + "]";
}

// The Rust crate's Metadata::validate, with reasons.
void validate(const Header& header, uint64_t size, const std::string& file) {
  uint64_t at = 0;
  for (const HeaderTensor& tensor : header.tensors) {
    const std::string name = in_quotes(tensor.name);
    if (tensor.begin != at || tensor.end < tensor.begin) {
      const std::string why = tensor.end < tensor.begin ? "it ends before it starts"
          : tensor.begin < at ? "it overlaps the tensor before it, which ends at " + std::to_string(at)
                              : "the tensor before it ends at " + std::to_string(at) + ", leaving a hole";
      fail_file(file, "tensor " + name + " has data_offsets " + offsets_text(tensor) + ": " + why +
                          " (the tensors' bytes must follow each other from 0, without holes or overlaps)");
    }
    std::string why;
    const std::optional<uint64_t> bytes = tensor_bytes(*tensor.dtype, tensor.shape, why);
    if (!bytes) {
      fail_file(file, "tensor " + name + " " + why);
    }
    if (tensor.end - tensor.begin != *bytes) {
      fail_file(file, "tensor " + name + " is " + std::string(tensor.dtype->name) + " of shape " +
                          shape_text(tensor.shape) + ", " + std::to_string(*bytes) + " bytes, but its data_offsets " +
                          offsets_text(tensor) + " span " + std::to_string(tensor.end - tensor.begin));
    }
    at = tensor.end;
  }
  const uint64_t data_bytes = size - header.data_start;
  if (at != data_bytes) {
    fail_file(file, "its tensors' bytes end " + std::to_string(at) + " bytes after its header, but the file has " +
                        std::to_string(data_bytes) + " bytes there" + (at > data_bytes ? " (truncated?)" : ""));
  }
}

} // namespace

void fail_file(const std::string& file, const std::string& what) {
  TORCH_CHECK(false, "the safetensors file '", file, "' is corrupted or is not a safetensors file: ", what);
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    text += (i ? ", " : "") + std::to_string(shape[i]);
  }
  return text + "]";
}

std::optional<uint64_t> tensor_bytes(const SafetensorsDtype& dtype, const std::vector<int64_t>& shape, std::string& why) {
  // As the crate counts: elements first, then bits, each product checked.
  uint64_t elements = 1;
  for (const int64_t dim : shape) {
    const auto size = static_cast<uint64_t>(dim);
    if (size != 0 && elements > std::numeric_limits<uint64_t>::max() / size) {
      why = "has shape " + shape_text(shape) + ", whose number of elements overflows 64 bits";
      return std::nullopt;
    }
    elements *= size;
  }
  if (elements > std::numeric_limits<uint64_t>::max() / dtype.bits) {
    why = "has shape " + shape_text(shape) + ", whose size overflows 64 bits";
    return std::nullopt;
  }
  const uint64_t bits = elements * dtype.bits;
  if (bits % 8 != 0) {
    why = "is " + std::string(dtype.name) + " of shape " + shape_text(shape) + ": " + std::to_string(bits) +
        " bits, not a whole number of bytes";
    return std::nullopt;
  }
  return bits / 8;
}

Header parse_header(const uint8_t* data, uint64_t size, const std::string& file) {
  if (size < kHeaderLengthBytes) {
    fail_file(file, "it is " + std::to_string(size) + " bytes long, too short for the header's length");
  }
  const uint64_t length = read_le(data, 8);
  if (length > kMaxHeaderBytes) {
    fail_file(file, "its header length is " + std::to_string(length) + " bytes, beyond the format's " +
                        std::to_string(kMaxHeaderBytes));
  }
  if (length > size - kHeaderLengthBytes) {
    fail_file(file, "its header length is " + std::to_string(length) + " bytes, but only " +
                        std::to_string(size - kHeaderLengthBytes) + " follow (truncated?)");
  }
  Header header;
  header.data_start = kHeaderLengthBytes + length;
  HeaderHandler handler(header);
  const char* text = reinterpret_cast<const char*>(data + kHeaderLengthBytes);
  if (!Json::sax_parse(text, text + length, &handler)) {
    fail_file(file, handler.error());
  }
  // By offset, as the crate sorts; a stable sort keeps the header's order
  // among empty tensors at one offset.
  std::stable_sort(header.tensors.begin(), header.tensors.end(), [](const HeaderTensor& a, const HeaderTensor& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  validate(header, size, file);
  return header;
}

std::string header_bytes(
    const std::vector<HeaderTensor>& tensors,
    const std::vector<std::pair<std::string, std::string>>& metadata) {
  const auto string = [](const std::string& text, const char* what) {
    std::string json;
    try {
      json = Json(text).dump();
    } catch (const Json::type_error&) {
      TORCH_CHECK_VALUE(
          false,
          what,
          " '",
          Json(text).dump(-1, ' ', false, Json::error_handler_t::replace),
          "' is not valid UTF-8, which a safetensors header must be");
    }
    return json;
  };
  std::string json = "{";
  if (!metadata.empty()) {
    json += "\"__metadata__\":{";
    for (size_t i = 0; i < metadata.size(); ++i) {
      json += (i ? "," : "") + string(metadata[i].first, "the metadata key") + ":" +
          string(metadata[i].second, "the metadata value");
    }
    json += "}";
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const HeaderTensor& tensor = tensors[i];
    json += (i || !metadata.empty() ? "," : "") + string(tensor.name, "the tensor name") + ":{\"dtype\":\"" +
        std::string(tensor.dtype->name) + "\",\"shape\":[";
    for (size_t d = 0; d < tensor.shape.size(); ++d) {
      json += (d ? "," : "") + std::to_string(tensor.shape[d]);
    }
    json += "],\"data_offsets\":[" + std::to_string(tensor.begin) + "," + std::to_string(tensor.end) + "]}";
  }
  json += "}";
  json.resize((json.size() + kHeaderLengthBytes - 1) / kHeaderLengthBytes * kHeaderLengthBytes, ' ');
  TORCH_CHECK_VALUE(
      json.size() <= kMaxHeaderBytes,
      "a safetensors header holds at most ",
      kMaxHeaderBytes,
      " bytes; this one would take ",
      json.size());
  std::string bytes(kHeaderLengthBytes, '\0');
  uint64_t length = json.size();
  for (size_t i = 0; i < kHeaderLengthBytes; ++i, length >>= 8) {
    bytes[i] = static_cast<char>(length & 0xff);
  }
  return bytes + json;
}

} // namespace torch_ext::detail
