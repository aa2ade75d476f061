// Little-endian integers in byte buffers: the zip archive's fields, the
// safetensors header's length, the messages of a sharded save.
#pragma once

#include <cstdint>

namespace torch_ext::detail {

// The `size`-byte little-endian integer at `data`.
inline uint64_t read_le(const uint8_t* data, int size) {
  uint64_t value = 0;
  for (int i = size - 1; i >= 0; --i) {
    value = (value << 8) | data[i];
  }
  return value;
}

// Appends `value` as `size` little-endian bytes to `out` (a byte container
// with push_back).
template <typename Bytes>
void append_le(Bytes& out, uint64_t value, int size) {
  for (int i = 0; i < size; ++i) {
    out.push_back(static_cast<typename Bytes::value_type>(static_cast<uint8_t>(value >> (8 * i))));
  }
}

} // namespace torch_ext::detail
