#include "archive_reader.h"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <utility>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/io/crc32.h"

#include "zip_format.h"

namespace torch_ext::detail {
namespace {

std::string hex(uint32_t value) {
  std::ostringstream text;
  text << "0x" << std::hex << value;
  return text.str();
}

// `text` with every byte that is not part of valid UTF-8 written as \xNN:
// messages quote names read from the file, and must stay text (Python
// decodes them).
std::string printable(const std::string& text) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    const auto byte = static_cast<unsigned char>(text[i]);
    size_t length = byte < 0x80 ? 1 : (byte >> 5) == 0x6 ? 2 : (byte >> 4) == 0xE ? 3 : (byte >> 3) == 0x1E ? 4 : 0;
    for (size_t k = 1; length != 0 && k < length; ++k) {
      if (i + k >= text.size() || (static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) {
        length = 0;
      }
    }
    if (length == 0) {
      char escaped[5];
      std::snprintf(escaped, sizeof(escaped), "\\x%02x", byte);
      out += escaped;
      ++i;
    } else {
      out.append(text, i, length);
      i += length;
    }
  }
  return out;
}

} // namespace

ArchiveReader::ArchiveReader(std::shared_ptr<const MappedFile> file)
    : ArchiveReader(file, 0, file->size(), "the checkpoint file '" + file->path() + "'") {}

ArchiveReader::ArchiveReader(std::shared_ptr<const MappedFile> file, uint64_t offset, uint64_t size, std::string name)
    : data_(file->data() + offset), size_(size), name_(std::move(name)), file_(file.get()), file_offset_(offset) {
  TORCH_INTERNAL_ASSERT(offset <= file->size() && size <= file->size() - offset);
  owner_ = std::move(file);
  read_central_directory();
  resolve_names();
}

ArchiveReader::ArchiveReader(std::shared_ptr<const std::string> bytes, std::string name)
    : data_(reinterpret_cast<const uint8_t*>(bytes->data())), size_(bytes->size()), name_(std::move(name)) {
  owner_ = std::move(bytes);
  read_central_directory();
  resolve_names();
}

void ArchiveReader::fail(const std::string& what) const {
  TORCH_CHECK(false, name_, " is corrupted or is not a checkpoint: ", printable(what));
}

void ArchiveReader::read_central_directory() {
  const uint8_t* data = data_;
  const uint64_t size = size_;
  const auto field = [&](uint64_t offset, int bytes) { return zip::read_le(data + offset, bytes); };

  // The end record sits in the last 22 + 65535 bytes (a comment may follow it).
  if (size < zip::kEndSize) {
    fail("it is " + std::to_string(size) + " bytes long, too short for a zip archive");
  }
  uint64_t end = size - zip::kEndSize;
  const uint64_t lowest = size > zip::kEndSize + zip::kMax16 ? size - zip::kEndSize - zip::kMax16 : 0;
  while (field(end, 4) != zip::kEndSignature) {
    if (end == lowest) {
      fail("no end of central directory record (truncated?)");
    }
    --end;
  }
  uint64_t count = field(end + 10, 2);
  uint64_t directory_size = field(end + 12, 4);
  uint64_t directory_offset = field(end + 16, 4);
  if (end >= zip::kZip64LocatorSize && field(end - zip::kZip64LocatorSize, 4) == zip::kZip64LocatorSignature) {
    const uint64_t zip64_end = field(end - zip::kZip64LocatorSize + 8, 8);
    if (zip64_end > end - zip::kZip64LocatorSize || end - zip::kZip64LocatorSize - zip64_end < zip::kZip64EndSize ||
        field(zip64_end, 4) != zip::kZip64EndSignature) {
      fail("a bad zip64 end of central directory record");
    }
    count = field(zip64_end + 32, 8);
    directory_size = field(zip64_end + 40, 8);
    directory_offset = field(zip64_end + 48, 8);
  }
  if (directory_offset > end || directory_size > end - directory_offset) {
    fail("the central directory lies outside the file");
  }
  // Each entry takes at least its fixed header: this bounds `count` before
  // anything is allocated for it.
  if (count > directory_size / zip::kCentralHeaderSize) {
    fail("the central directory claims " + std::to_string(count) + " records in " + std::to_string(directory_size) +
         " bytes");
  }

  records_.reserve(count);
  uint64_t at = directory_offset;
  const uint64_t directory_end = directory_offset + directory_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (directory_end - at < zip::kCentralHeaderSize || field(at, 4) != zip::kCentralHeaderSignature) {
      fail("central directory entry " + std::to_string(i) + " is damaged");
    }
    const auto flags = static_cast<uint16_t>(field(at + 8, 2));
    const auto method = static_cast<uint16_t>(field(at + 10, 2));
    const auto crc = static_cast<uint32_t>(field(at + 16, 4));
    uint64_t compressed = field(at + 20, 4);
    uint64_t uncompressed = field(at + 24, 4);
    const uint64_t name_size = field(at + 28, 2);
    const uint64_t extra_size = field(at + 30, 2);
    const uint64_t comment_size = field(at + 32, 2);
    uint64_t header_offset = field(at + 42, 4);
    const uint64_t entry_size = zip::kCentralHeaderSize + name_size + extra_size + comment_size;
    if (directory_end - at < entry_size) {
      fail("central directory entry " + std::to_string(i) + " runs past the directory");
    }
    std::string name(reinterpret_cast<const char*>(data + at + zip::kCentralHeaderSize), name_size);
    // Zip64 fields replace, in this order, those of the header set to 0xFFFFFFFF.
    uint64_t extra = at + zip::kCentralHeaderSize + name_size;
    const uint64_t extra_end = extra + extra_size;
    while (extra_end - extra >= 4) {
      const uint64_t id = field(extra, 2);
      const uint64_t length = field(extra + 2, 2);
      if (extra_end - extra - 4 < length) {
        fail("the extra field of record '" + name + "' is damaged");
      }
      if (id == zip::kZip64ExtraId) {
        uint64_t next = extra + 4;
        for (uint64_t* value : {&uncompressed, &compressed, &header_offset}) {
          if (*value == zip::kMax32) {
            if (next + 8 > extra + 4 + length) {
              fail("the zip64 field of record '" + name + "' is too short");
            }
            *value = field(next, 8);
            next += 8;
          }
        }
      }
      extra += 4 + length;
    }
    if (method != zip::kStored || compressed != uncompressed) {
      fail("record '" + name + "' is compressed; checkpoints store records uncompressed");
    }
    if ((flags & 1) != 0) {
      fail("record '" + name + "' is encrypted");
    }
    if (header_offset > directory_offset || uncompressed > directory_offset - header_offset) {
      fail("record '" + name + "' lies outside the file");
    }
    records_.push_back(Record{std::move(name), header_offset, uncompressed, crc});
    at += entry_size;
  }
}

// Which record a name resolves to, one rule for the whole archive, so that
// no record is read by us and another by torch.load: every record lies in
// the folder of the first (torch.load requires it too); no two names are
// equal ignoring ASCII case (torch.load looks names up ignoring case, and
// finds the last one listed: such an archive is refused); so a name resolves
// to the one record that has it, ignoring case, as in torch.load. Each
// record's local header must name it too (data_offset).
void ArchiveReader::resolve_names() {
  if (records_.empty()) {
    fail("it holds no records; torch.save writes a data.pkl record and one per storage");
  }
  const std::string first = records_.front().name;
  const size_t slash = first.find('/');
  if (slash == std::string::npos) {
    fail("its first record '" + first + "' is in no folder; torch.save writes every record in one folder");
  }
  folder_ = first.substr(0, slash + 1);
  for (size_t i = 0; i < records_.size(); ++i) {
    Record& record = records_[i];
    if (record.name.compare(0, folder_.size(), folder_) != 0) {
      fail(
          "record '" + record.name + "' is outside the folder '" + folder_ + "' that its first record '" + first +
          "' puts the archive in; torch.save writes every record in one folder");
    }
    record.name.erase(0, folder_.size());
    const auto [found, added] = index_.emplace(lookup_key(record.name), i);
    if (!added) {
      fail(
          "records '" + folder_ + records_[found->second].name + "' and '" + folder_ + record.name +
          "' have the same name (torch.load ignores case in names, and would read the last of them)");
    }
  }
  if (find("data.pkl") == nullptr) {
    fail("it has no data.pkl record, which torch.save writes");
  }
}

std::string ArchiveReader::lookup_key(std::string_view name) {
  std::string key(name);
  for (char& c : key) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return key;
}

const ArchiveReader::Record* ArchiveReader::find(std::string_view name) const {
  const auto found = index_.find(lookup_key(name));
  return found == index_.end() ? nullptr : &records_[found->second];
}

uint64_t ArchiveReader::data_offset(const Record& record) const {
  const uint8_t* data = data_;
  const uint64_t at = record.header_offset;
  if (size_ - at < zip::kLocalHeaderSize || zip::read_le(data + at, 4) != zip::kLocalHeaderSignature) {
    fail("the local header of record '" + record.name + "' is damaged");
  }
  const uint64_t name_size = zip::read_le(data + at + 26, 2);
  const uint64_t offset = at + zip::kLocalHeaderSize + name_size + zip::read_le(data + at + 28, 2);
  if (offset > size_ || record.size > size_ - offset) {
    fail("record '" + record.name + "' runs past the end of the file (truncated?)");
  }
  const std::string_view local_name(reinterpret_cast<const char*>(data + at + zip::kLocalHeaderSize), name_size);
  const std::string name = folder_ + record.name;
  if (local_name != name) {
    fail("the local header of record '" + name + "' names it '" + std::string(local_name) + "'");
  }
  return offset;
}

void ArchiveReader::verify(const Record& record, const std::string& context) const {
  const uint64_t offset = data_offset(record);
  if (file_ != nullptr) {
    file_->prefetch(file_offset_ + offset, record.size);
  }
  const uint32_t crc = crc32(0, data_ + offset, record.size);
  if (crc != record.crc) {
    fail(
        "record '" + folder_ + record.name + "'" + (context.empty() ? "" : " (" + context + ")") +
        " fails its CRC32 check: the archive says " + hex(record.crc) + ", its data has " + hex(crc));
  }
}

} // namespace torch_ext::detail
