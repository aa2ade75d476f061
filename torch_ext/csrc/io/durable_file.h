#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace torch_ext::detail {

// A file that appears whole or not at all: written into a temporary file in
// the same folder, then commit() fsyncs it, renames it over `path` and
// fsyncs the folder. Destroyed uncommitted, it removes the temporary file and
// leaves `path` as it was. Errors name `path`.
class DurableFile {
 public:
  explicit DurableFile(std::string path);
  DurableFile(const DurableFile&) = delete;
  DurableFile& operator=(const DurableFile&) = delete;
  ~DurableFile();

  void write(const void* data, size_t size);
  uint64_t position() const {
    return position_;
  }
  void commit();

  // The temporary file's name for `path`: `.<name>.<pid>.<n>.tmp` beside it.
  static bool is_temporary_name(const std::string& file_name);

 private:
  void start_writeback();

  std::string path_;
  std::string temporary_path_;
  int fd_ = -1;
  uint64_t position_ = 0;
  uint64_t written_back_ = 0;
  bool committed_ = false;
};

// Makes the entries of `folder` durable (after a rename, a creation or an
// unlink in it). Errors name `folder` and `path`, the entry it was for.
void fsync_folder(const std::string& folder, const std::string& path);

// A whole file mapped read-only into memory, copy-on-write: tensors built
// over it may be written to without changing the file, as with
// torch.load(mmap=True). Shared by every tensor made from it, and unmapped
// when the last one goes.
class MappedFile {
 public:
  // Throws, naming the file, if it cannot be opened or mapped.
  static std::shared_ptr<const MappedFile> open(const std::string& path);
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::string& path() const {
    return path_;
  }
  const uint8_t* data() const {
    return data_;
  }
  uint64_t size() const {
    return size_;
  }
  // Maps [offset, offset + size) into the page tables ahead of a read of all
  // of it, instead of one page fault per page. A hint.
  void prefetch(uint64_t offset, uint64_t size) const;

 private:
  MappedFile(std::string path, uint8_t* data, uint64_t size);

  std::string path_;
  uint8_t* data_;
  uint64_t size_;
};

} // namespace torch_ext::detail
