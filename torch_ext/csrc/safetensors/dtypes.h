#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <optional>
#include <string_view>

namespace torch_ext::detail {

// A dtype of the safetensors format: its name in a header, its width in
// bits, the torch dtype that holds it (none for F6_*), and its place in the
// Rust crate's Dtype enum, which orders tensors in a file (widest first).
struct SafetensorsDtype {
  std::string_view name;
  uint8_t bits;
  std::optional<c10::ScalarType> scalar_type;
  uint8_t rank;
};

// nullptr for a name the format does not know.
const SafetensorsDtype* safetensors_dtype(std::string_view name);
// nullptr for a torch dtype the format cannot hold (complex128, bits, ...).
const SafetensorsDtype* safetensors_dtype(c10::ScalarType scalar_type);

// F4 packs two values per byte: torch's float4_e2m1fn_x2 holds a pair, so
// its last dimension is half the header's.
constexpr std::string_view kPackedPairDtype = "F4";

} // namespace torch_ext::detail
