#pragma once

// Which dtypes a checkpoint may hold, stated once: those torch.save writes
// (every dtype but the quantized ones and the sub-byte ints). Each format
// maps them to its own names (pickle/dtypes.h: torch.save's).

#include <c10/core/ScalarType.h>

#include <array>

namespace torch_ext::detail {

inline constexpr std::array<c10::ScalarType, 27> kCheckpointDtypes{{
    c10::ScalarType::Double,          c10::ScalarType::Float,         c10::ScalarType::Half,
    c10::ScalarType::BFloat16,        c10::ScalarType::ComplexFloat,  c10::ScalarType::ComplexDouble,
    c10::ScalarType::Bool,            c10::ScalarType::Byte,          c10::ScalarType::Char,
    c10::ScalarType::Short,           c10::ScalarType::Int,           c10::ScalarType::Long,
    c10::ScalarType::UInt16,          c10::ScalarType::UInt32,        c10::ScalarType::UInt64,
    c10::ScalarType::ComplexHalf,     c10::ScalarType::Float8_e4m3fn, c10::ScalarType::Float8_e5m2,
    c10::ScalarType::Float8_e4m3fnuz, c10::ScalarType::Float8_e5m2fnuz, c10::ScalarType::Float8_e8m0fnu,
    c10::ScalarType::Float4_e2m1fn_x2, c10::ScalarType::Bits1x8,      c10::ScalarType::Bits2x4,
    c10::ScalarType::Bits4x2,         c10::ScalarType::Bits8,         c10::ScalarType::Bits16,
}};

constexpr bool is_checkpoint_dtype(c10::ScalarType dtype) {
  for (const c10::ScalarType held : kCheckpointDtypes) {
    if (held == dtype) {
      return true;
    }
  }
  return false;
}

} // namespace torch_ext::detail
