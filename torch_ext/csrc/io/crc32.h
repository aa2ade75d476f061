#pragma once

#include <cstddef>
#include <cstdint>

namespace torch_ext::detail {

// The zip (gzip, IEEE) CRC-32 of `size` bytes, continuing from `crc` (0 to
// start), with ISA-L's folding implementation: memory speed, not a byte loop.
uint32_t crc32(uint32_t crc, const void* data, size_t size);

} // namespace torch_ext::detail
