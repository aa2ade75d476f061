#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace torch_ext::detail {

// A file that appears whole or not at all: written into a temporary file in
// the same folder, then commit() fsyncs it, renames it over `path` and
// fsyncs the folder. Destroyed uncommitted, it removes the temporary file and
// leaves `path` as it was. Errors name `path`. With `sync` false, commit()
// renames without any fsync: the file appears whole, but a crash may lose it
// (FileSystemWriter's sync_files=False).
class DurableFile {
 public:
  explicit DurableFile(std::string path, bool sync = true);
  DurableFile(const DurableFile&) = delete;
  DurableFile& operator=(const DurableFile&) = delete;
  ~DurableFile();

  void write(const void* data, size_t size);
  // Overwrites `size` bytes at `offset`, all of which write() has passed:
  // for a header whose fields are known only once the data is written.
  void write_at(uint64_t offset, const void* data, size_t size);
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
  bool sync_;
  int fd_ = -1;
  uint64_t position_ = 0;
  uint64_t written_back_ = 0;
  bool committed_ = false;
};

// Makes the entries of `folder` durable (after a rename, a creation or an
// unlink in it). Errors name `folder` and `path`, the entry it was for.
void fsync_folder(const std::string& folder, const std::string& path);

} // namespace torch_ext::detail
