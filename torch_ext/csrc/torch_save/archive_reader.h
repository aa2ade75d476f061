#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "torch_ext/csrc/io/mapped_file.h"

namespace torch_ext::detail {

// Reads the zip archive of a checkpoint (ours or torch.save's) in place: a
// mapped file, a range of one (an item of a DCP data file), or memory. The
// constructor reads the central directory only, checking every offset and
// size against the bytes and that each name resolves to one record, the one
// torch.load reads (resolve_names); a record's local header and data are read
// when asked for, so that a partial load touches only its records. Every
// error names the archive; none crashes, whatever the bytes.
class ArchiveReader {
 public:
  struct Record {
    std::string name; // without the folder
    uint64_t header_offset;
    uint64_t size;
    uint32_t crc;
  };

  // A whole file: errors say "the checkpoint file '<path>'".
  explicit ArchiveReader(std::shared_ptr<const MappedFile> file);
  // The `size` bytes of `file` from `offset` (which must lie in it), or
  // bytes in memory; errors start with `name`.
  ArchiveReader(std::shared_ptr<const MappedFile> file, uint64_t offset, uint64_t size, std::string name);
  ArchiveReader(std::shared_ptr<const std::string> bytes, std::string name);

  // What keeps data() alive: tensors over records hold it.
  const std::shared_ptr<const void>& owner() const {
    return owner_;
  }
  const uint8_t* data() const {
    return data_;
  }
  uint64_t size() const {
    return size_;
  }
  const std::string& name() const {
    return name_;
  }
  const std::vector<Record>& records() const {
    return records_;
  }
  // The record `<folder>/<name>` (ignoring case, as torch.load finds it), or
  // nullptr.
  const Record* find(std::string_view name) const;
  // Where the record's data starts in data(), once its local header is
  // checked.
  uint64_t data_offset(const Record& record) const;
  // Throws, naming the archive, the record and `context` (a key, say),
  // unless the record's data has its CRC32.
  void verify(const Record& record, const std::string& context = "") const;

  // An error naming the archive, for what does not hold in it.
  [[noreturn]] void fail(const std::string& what) const;

 private:
  void read_central_directory();
  void resolve_names();
  static std::string lookup_key(std::string_view name);

  std::shared_ptr<const void> owner_;
  const uint8_t* data_;
  uint64_t size_;
  std::string name_;
  // The mapped file the bytes are in (from `file_offset_`), if they are:
  // reads of a record are prefetched.
  const MappedFile* file_ = nullptr;
  uint64_t file_offset_ = 0;
  std::string folder_;
  std::vector<Record> records_;
  std::unordered_map<std::string, size_t> index_; // by lookup_key
};

} // namespace torch_ext::detail
