#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dtypes.h"

namespace torch_ext::detail {

// The Rust crate's bound on the JSON header (MAX_HEADER_SIZE).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// The 8-byte little-endian length before the JSON header.
constexpr uint64_t kHeaderLengthBytes = 8;

// A tensor as the header gives it.
struct HeaderTensor {
  std::string name;
  const SafetensorsDtype* dtype = nullptr;
  std::vector<int64_t> shape;
  uint64_t begin = 0; // data_offsets, from the start of the data
  uint64_t end = 0;
};

struct Header {
  uint64_t data_start = 0; // where the data starts in the file: 8 + the header's length
  std::vector<HeaderTensor> tensors; // in the file's order, by offset
  std::vector<std::pair<std::string, std::string>> metadata; // __metadata__, in the header's order
};

// Parses and checks the header of a safetensors file of `size` bytes, all
// of which `data` holds, with the Rust crate's rules (a known dtype per
// tensor, data_offsets that tile the data from 0 to the end of the file in
// order, each spanning its shape's bytes, a header of at most
// kMaxHeaderBytes) and more: duplicate keys, nesting beyond a few levels and
// non-UTF-8 are refused. Throws a c10::Error naming `file` on the first
// rule broken.
Header parse_header(const uint8_t* data, uint64_t size, const std::string& file);

// The bytes before the data of a file holding `tensors` (in this order,
// with these offsets) and `metadata`: the length, then the compact JSON
// that serde_json writes, padded with spaces to a multiple of 8 bytes, as
// the Rust crate pads it. Throws a ValueError for a name that is not UTF-8
// or a header beyond kMaxHeaderBytes.
std::string header_bytes(const std::vector<HeaderTensor>& tensors, const std::vector<std::pair<std::string, std::string>>& metadata);

// Bytes of a tensor of `dtype` and (header) `shape`, or nullopt with the
// reason in `why` where that overflows 64 bits or is not a whole number of
// bytes (F4 and F6 are narrower than a byte).
std::optional<uint64_t> tensor_bytes(const SafetensorsDtype& dtype, const std::vector<int64_t>& shape, std::string& why);

// `[2, 3]`
std::string shape_text(const std::vector<int64_t>& shape);

// The error for a damaged or foreign file: names it and says what is wrong.
[[noreturn]] void fail_file(const std::string& file, const std::string& what);

} // namespace torch_ext::detail
