#include "crc32.h"

#include <isa-l/crc.h>

namespace torch_ext::detail {

uint32_t crc32(uint32_t crc, const void* data, size_t size) {
  return crc32_gzip_refl(crc, static_cast<const unsigned char*>(data), size);
}

} // namespace torch_ext::detail
