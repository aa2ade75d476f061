#include "dtypes.h"

#include <array>

#include "torch_ext/csrc/state/checkpoint_dtypes.h"

namespace torch_ext::detail {
namespace {

using c10::ScalarType;

// Read off torch 2.13's torch.save, for every dtype a checkpoint holds, in
// kCheckpointDtypes' order.
constexpr std::array<DtypeNames, kCheckpointDtypes.size()> kDtypes{{
    {ScalarType::Double, "float64", "DoubleStorage"},
    {ScalarType::Float, "float32", "FloatStorage"},
    {ScalarType::Half, "float16", "HalfStorage"},
    {ScalarType::BFloat16, "bfloat16", "BFloat16Storage"},
    {ScalarType::ComplexFloat, "complex64", "ComplexFloatStorage"},
    {ScalarType::ComplexDouble, "complex128", "ComplexDoubleStorage"},
    {ScalarType::Bool, "bool", "BoolStorage"},
    {ScalarType::Byte, "uint8", "ByteStorage"},
    {ScalarType::Char, "int8", "CharStorage"},
    {ScalarType::Short, "int16", "ShortStorage"},
    {ScalarType::Int, "int32", "IntStorage"},
    {ScalarType::Long, "int64", "LongStorage"},
    {ScalarType::UInt16, "uint16", ""},
    {ScalarType::UInt32, "uint32", ""},
    {ScalarType::UInt64, "uint64", ""},
    {ScalarType::ComplexHalf, "complex32", ""},
    {ScalarType::Float8_e4m3fn, "float8_e4m3fn", ""},
    {ScalarType::Float8_e5m2, "float8_e5m2", ""},
    {ScalarType::Float8_e4m3fnuz, "float8_e4m3fnuz", ""},
    {ScalarType::Float8_e5m2fnuz, "float8_e5m2fnuz", ""},
    {ScalarType::Float8_e8m0fnu, "float8_e8m0fnu", ""},
    {ScalarType::Float4_e2m1fn_x2, "float4_e2m1fn_x2", ""},
    {ScalarType::Bits1x8, "bits1x8", ""},
    {ScalarType::Bits2x4, "bits2x4", ""},
    {ScalarType::Bits4x2, "bits4x2", ""},
    {ScalarType::Bits8, "bits8", ""},
    {ScalarType::Bits16, "bits16", ""},
}};

constexpr bool names_every_checkpoint_dtype() {
  for (size_t i = 0; i < kDtypes.size(); ++i) {
    if (kDtypes[i].dtype != kCheckpointDtypes[i]) {
      return false;
    }
  }
  return true;
}
static_assert(names_every_checkpoint_dtype(), "kDtypes names kCheckpointDtypes, one by one");

} // namespace

const DtypeNames* dtype_names(c10::ScalarType dtype) {
  for (const DtypeNames& names : kDtypes) {
    if (names.dtype == dtype) {
      return &names;
    }
  }
  return nullptr;
}

std::optional<c10::ScalarType> dtype_from_python_name(std::string_view name) {
  for (const DtypeNames& names : kDtypes) {
    if (names.python_name == name) {
      return names.dtype;
    }
  }
  return std::nullopt;
}

std::optional<c10::ScalarType> dtype_from_storage_class(std::string_view name) {
  for (const DtypeNames& names : kDtypes) {
    if (!names.storage_class.empty() && names.storage_class == name) {
      return names.dtype;
    }
  }
  return std::nullopt;
}

} // namespace torch_ext::detail
