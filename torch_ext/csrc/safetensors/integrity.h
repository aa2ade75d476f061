#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace torch_ext::detail {

// Our CRC32 of a tensor's bytes sits in `__metadata__` (a string map, which
// the safetensors package carries and ignores) under
// `torch_ext.crc32.<tensor name>`, as 8 lowercase hex digits: a fixed width,
// so that a header's length is known before its CRC32s are.
std::string crc_metadata_key(const std::string& tensor);
std::string crc_text(uint32_t crc);
// The tensor a metadata key holds the CRC32 of, or nullopt for other keys.
std::optional<std::string_view> crc_key_tensor(std::string_view key);
// nullopt unless `text` is 8 hex digits.
std::optional<uint32_t> parse_crc(std::string_view text);
std::string crc_hex(uint32_t crc); // `0x1a2b3c4d`, for messages

} // namespace torch_ext::detail
