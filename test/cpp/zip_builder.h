// Zip archives for the fuzzer, field by field: the records of a well-formed
// archive, and an archive written from records that says where each of its
// numeric fields lies, so that a mutation can change one of them.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace torch_ext_test {

struct ZipRecord {
  std::string name; // in the central directory
  std::string data;
  std::string local_name; // in the local header: the name unless set
};

// A numeric field of a written archive.
struct ZipField {
  size_t offset;
  int width; // bytes, little-endian
};

inline uint32_t crc32_of(const std::string& data) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> entries{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) {
        c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      }
      entries[i] = c;
    }
    return entries;
  }();
  uint32_t crc = 0xFFFFFFFFu;
  for (const char byte : data) {
    crc = table[(crc ^ static_cast<unsigned char>(byte)) & 0xFF] ^ (crc >> 8);
  }
  return crc ^ 0xFFFFFFFFu;
}

inline uint64_t read_le(const std::string& bytes, size_t at, int width) {
  uint64_t value = 0;
  for (int i = width - 1; i >= 0; --i) {
    value = (value << 8) | static_cast<unsigned char>(bytes[at + static_cast<size_t>(i)]);
  }
  return value;
}

inline void write_le(std::string& bytes, size_t at, int width, uint64_t value) {
  for (int i = 0; i < width; ++i) {
    bytes[at + static_cast<size_t>(i)] = static_cast<char>(value >> (8 * i));
  }
}

// The records of a well-formed archive (a seed), in central directory order.
inline std::vector<ZipRecord> read_zip_records(const std::string& bytes) {
  size_t end = bytes.size() - 22;
  while (read_le(bytes, end, 4) != 0x06054b50) {
    --end;
  }
  uint64_t count = read_le(bytes, end + 10, 2);
  uint64_t at = read_le(bytes, end + 16, 4);
  if (end >= 20 && read_le(bytes, end - 20, 4) == 0x07064b50) {
    const uint64_t zip64_end = read_le(bytes, end - 20 + 8, 8);
    count = read_le(bytes, zip64_end + 32, 8);
    at = read_le(bytes, zip64_end + 48, 8);
  }
  std::vector<ZipRecord> records;
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t name_size = read_le(bytes, at + 28, 2);
    const uint64_t extra_size = read_le(bytes, at + 30, 2);
    const uint64_t comment_size = read_le(bytes, at + 32, 2);
    uint64_t size = read_le(bytes, at + 24, 4);
    uint64_t offset = read_le(bytes, at + 42, 4);
    for (uint64_t extra = at + 46 + name_size; extra + 4 <= at + 46 + name_size + extra_size;) {
      const uint64_t id = read_le(bytes, extra, 2);
      const uint64_t length = read_le(bytes, extra + 2, 2);
      if (id == 1) {
        uint64_t next = extra + 4;
        if (size == 0xFFFFFFFFu) {
          size = read_le(bytes, next, 8);
          next += 16; // uncompressed, then compressed
        }
        if (offset == 0xFFFFFFFFu) {
          offset = read_le(bytes, next, 8);
        }
      }
      extra += 4 + length;
    }
    const uint64_t data = offset + 30 + read_le(bytes, offset + 26, 2) + read_le(bytes, offset + 28, 2);
    ZipRecord record;
    record.name = bytes.substr(at + 46, name_size);
    record.data = bytes.substr(data, size);
    records.push_back(std::move(record));
    at += 46 + name_size + extra_size + comment_size;
  }
  return records;
}

// An archive of `records`, STORED, each record's data 64-byte aligned as
// torch.save aligns it; with `zip64`, every size and offset is in zip64
// fields (and a zip64 end record). `fields` gets every numeric field.
inline std::string write_zip(const std::vector<ZipRecord>& records, bool zip64, std::vector<ZipField>* fields) {
  std::string out;
  const auto put = [&](uint64_t value, int width) {
    if (fields != nullptr) {
      fields->push_back({out.size(), width});
    }
    out.append(static_cast<size_t>(width), '\0');
    write_le(out, out.size() - static_cast<size_t>(width), width, value);
  };
  const uint32_t max32 = 0xFFFFFFFFu;
  const uint16_t version = zip64 ? 45 : 20;
  std::vector<uint64_t> offsets;
  for (const ZipRecord& record : records) {
    const std::string& local_name = record.local_name.empty() ? record.name : record.local_name;
    offsets.push_back(out.size());
    const size_t zip64_extra = zip64 ? 20 : 0;
    const size_t unpadded = out.size() + 30 + local_name.size() + zip64_extra + 4;
    const size_t padding = (64 - unpadded % 64) % 64;
    put(0x04034b50, 4);
    put(version, 2);
    put(0, 2); // flags
    put(0, 2); // stored
    put(0, 4); // time and date
    put(crc32_of(record.data), 4);
    put(zip64 ? max32 : record.data.size(), 4);
    put(zip64 ? max32 : record.data.size(), 4);
    put(local_name.size(), 2);
    put(zip64_extra + 4 + padding, 2);
    out += local_name;
    if (zip64) {
      put(1, 2);
      put(16, 2);
      put(record.data.size(), 8);
      put(record.data.size(), 8);
    }
    put(0x4246, 2); // torch.save's padding field
    put(padding, 2);
    out.append(padding, 'Z');
    out += record.data;
  }
  const uint64_t directory = out.size();
  for (size_t i = 0; i < records.size(); ++i) {
    const ZipRecord& record = records[i];
    put(0x02014b50, 4);
    put(version, 2); // made by
    put(version, 2); // needed
    put(0, 2);
    put(0, 2);
    put(0, 4);
    put(crc32_of(record.data), 4);
    put(zip64 ? max32 : record.data.size(), 4);
    put(zip64 ? max32 : record.data.size(), 4);
    put(record.name.size(), 2);
    put(zip64 ? 28 : 0, 2);
    put(0, 2); // comment
    put(0, 2); // disk
    put(0, 2); // internal attributes
    put(0, 4); // external attributes
    put(zip64 ? max32 : offsets[i], 4);
    out += record.name;
    if (zip64) {
      put(1, 2);
      put(24, 2);
      put(record.data.size(), 8);
      put(record.data.size(), 8);
      put(offsets[i], 8);
    }
  }
  const uint64_t directory_size = out.size() - directory;
  if (zip64) {
    const uint64_t zip64_end = out.size();
    put(0x06064b50, 4);
    put(44, 8);
    put(45, 2);
    put(45, 2);
    put(0, 4);
    put(0, 4);
    put(records.size(), 8);
    put(records.size(), 8);
    put(directory_size, 8);
    put(directory, 8);
    put(0x07064b50, 4);
    put(0, 4);
    put(zip64_end, 8);
    put(1, 4);
  }
  put(0x06054b50, 4);
  put(0, 2);
  put(0, 2);
  put(zip64 ? 0xFFFF : records.size(), 2);
  put(zip64 ? 0xFFFF : records.size(), 2);
  put(zip64 ? max32 : directory_size, 4);
  put(zip64 ? max32 : directory, 4);
  put(0, 2); // comment
  return out;
}

} // namespace torch_ext_test
