#include "integrity.h"

#include <cstdio>

namespace torch_ext::detail {
namespace {

constexpr std::string_view kCrcPrefix = "torch_ext.crc32.";

} // namespace

std::string crc_metadata_key(const std::string& tensor) {
  return std::string(kCrcPrefix) + tensor;
}

std::string crc_text(uint32_t crc) {
  char text[9];
  std::snprintf(text, sizeof(text), "%08x", crc);
  return text;
}

std::string crc_hex(uint32_t crc) {
  return "0x" + crc_text(crc);
}

std::optional<std::string_view> crc_key_tensor(std::string_view key) {
  if (key.substr(0, kCrcPrefix.size()) != kCrcPrefix) {
    return std::nullopt;
  }
  return key.substr(kCrcPrefix.size());
}

std::optional<uint32_t> parse_crc(std::string_view text) {
  if (text.size() != 8) {
    return std::nullopt;
  }
  uint32_t crc = 0;
  for (const char c : text) {
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) {
      return std::nullopt;
    }
    crc = (crc << 4) | static_cast<uint32_t>(digit);
  }
  return crc;
}

} // namespace torch_ext::detail
