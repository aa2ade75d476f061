#include "dtypes.h"

#include <array>

namespace torch_ext::detail {
namespace {

using c10::ScalarType;

// The safetensors crate's Dtype enum, in its order (its `rank`), with
// torch's dtype for each as the safetensors package maps them.
constexpr std::array<SafetensorsDtype, 22> kDtypes{{
    {"BOOL", 8, ScalarType::Bool, 0},
    {"F4", 4, ScalarType::Float4_e2m1fn_x2, 1},
    {"F6_E2M3", 6, std::nullopt, 2},
    {"F6_E3M2", 6, std::nullopt, 3},
    {"U8", 8, ScalarType::Byte, 4},
    {"I8", 8, ScalarType::Char, 5},
    {"F8_E5M2", 8, ScalarType::Float8_e5m2, 6},
    {"F8_E4M3", 8, ScalarType::Float8_e4m3fn, 7},
    {"F8_E8M0", 8, ScalarType::Float8_e8m0fnu, 8},
    {"F8_E4M3FNUZ", 8, ScalarType::Float8_e4m3fnuz, 9},
    {"F8_E5M2FNUZ", 8, ScalarType::Float8_e5m2fnuz, 10},
    {"I16", 16, ScalarType::Short, 11},
    {"U16", 16, ScalarType::UInt16, 12},
    {"F16", 16, ScalarType::Half, 13},
    {"BF16", 16, ScalarType::BFloat16, 14},
    {"I32", 32, ScalarType::Int, 15},
    {"U32", 32, ScalarType::UInt32, 16},
    {"F32", 32, ScalarType::Float, 17},
    {"C64", 64, ScalarType::ComplexFloat, 18},
    {"F64", 64, ScalarType::Double, 19},
    {"I64", 64, ScalarType::Long, 20},
    {"U64", 64, ScalarType::UInt64, 21},
}};

} // namespace

const SafetensorsDtype* safetensors_dtype(std::string_view name) {
  for (const SafetensorsDtype& dtype : kDtypes) {
    if (dtype.name == name) {
      return &dtype;
    }
  }
  return nullptr;
}

const SafetensorsDtype* safetensors_dtype(c10::ScalarType scalar_type) {
  for (const SafetensorsDtype& dtype : kDtypes) {
    if (dtype.scalar_type == scalar_type) {
      return &dtype;
    }
  }
  return nullptr;
}

} // namespace torch_ext::detail
