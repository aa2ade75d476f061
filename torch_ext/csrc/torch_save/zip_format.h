#pragma once

// The zip structures torch.save's archives use (PKWARE APPNOTE 6.3), shared
// by the archive writer and reader. All fields are little-endian.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "torch_ext/csrc/io/little_endian.h"

namespace torch_ext::detail::zip {

constexpr uint32_t kLocalHeaderSignature = 0x04034b50;
constexpr uint32_t kDataDescriptorSignature = 0x08074b50;
constexpr uint32_t kCentralHeaderSignature = 0x02014b50;
constexpr uint32_t kZip64EndSignature = 0x06064b50;
constexpr uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr uint32_t kEndSignature = 0x06054b50;

constexpr size_t kLocalHeaderSize = 30;
constexpr size_t kCentralHeaderSize = 46;
constexpr size_t kZip64EndSize = 56;
constexpr size_t kZip64LocatorSize = 20;
constexpr size_t kEndSize = 22;

constexpr uint16_t kZip64ExtraId = 0x0001;
// torch.save pads local headers with an extra field of this id ("FB").
constexpr uint16_t kPaddingExtraId = 0x4246;
constexpr uint16_t kZip64Version = 45;
// Bit 3: CRC and sizes in a data descriptor after the data; bit 11: UTF-8 names.
constexpr uint16_t kFlags = 0x0808;
constexpr uint16_t kStored = 0;

constexpr uint32_t kMax32 = 0xFFFFFFFFu;
constexpr uint16_t kMax16 = 0xFFFFu;

// Appends little-endian fields to a byte buffer.
class Bytes {
 public:
  explicit Bytes(std::vector<uint8_t>& out) : out_(out) {}
  Bytes& u16(uint16_t value) {
    return put(value, 2);
  }
  Bytes& u32(uint32_t value) {
    return put(value, 4);
  }
  Bytes& u64(uint64_t value) {
    return put(value, 8);
  }
  Bytes& raw(const void* data, size_t size) {
    const auto* bytes = static_cast<const uint8_t*>(data);
    out_.insert(out_.end(), bytes, bytes + size);
    return *this;
  }
  Bytes& zeros(size_t size) {
    out_.insert(out_.end(), size, 0);
    return *this;
  }

 private:
  Bytes& put(uint64_t value, int size) {
    append_le(out_, value, size);
    return *this;
  }
  std::vector<uint8_t>& out_;
};

using detail::read_le;

} // namespace torch_ext::detail::zip
