#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace torch_ext::detail {

// A whole file mapped read-only into memory, copy-on-write: tensors built
// over it may be written to without changing the file, as with
// torch.load(mmap=True). Shared by every tensor made from it, and unmapped
// when the last one goes.
class MappedFile {
 public:
  // Throws, naming the file, if it cannot be opened or mapped, or is no
  // regular file (a FIFO, a device: opening one never blocks).
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
