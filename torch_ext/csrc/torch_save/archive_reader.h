#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "torch_ext/csrc/io/mapped_file.h"

namespace torch_ext::detail {

// Reads the zip archive of a checkpoint (ours or torch.save's) in place, over
// a mapped file. The constructor reads the central directory only, checking
// every offset and size against the file and that each name resolves to one
// record, the one torch.load reads (resolve_names); a record's local header
// and data are read when asked for, so that a partial load touches only its
// records. Every error names the file; none crashes, whatever the bytes.
class ArchiveReader {
 public:
  struct Record {
    std::string name; // without the folder
    uint64_t header_offset;
    uint64_t size;
    uint32_t crc;
  };

  explicit ArchiveReader(std::shared_ptr<const MappedFile> file);

  const std::shared_ptr<const MappedFile>& file() const {
    return file_;
  }
  const std::string& path() const {
    return file_->path();
  }
  const std::vector<Record>& records() const {
    return records_;
  }
  // The record `<folder>/<name>` (ignoring case, as torch.load finds it), or
  // nullptr.
  const Record* find(std::string_view name) const;
  // Where the record's data starts in the file, once its local header is
  // checked.
  uint64_t data_offset(const Record& record) const;
  // Throws, naming the file, the record and `context` (a key, say), unless
  // the record's data has its CRC32.
  void verify(const Record& record, const std::string& context = "") const;

  // An error naming the file, for what does not hold in it.
  [[noreturn]] void fail(const std::string& what) const;

 private:
  void read_central_directory();
  void resolve_names();
  static std::string lookup_key(std::string_view name);

  std::shared_ptr<const MappedFile> file_;
  std::string folder_;
  std::vector<Record> records_;
  std::unordered_map<std::string, size_t> index_; // by lookup_key
};

} // namespace torch_ext::detail
