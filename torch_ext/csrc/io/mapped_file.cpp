#include "mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include <c10/util/Exception.h>

#include "file_type.h"

namespace torch_ext::detail {

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  // Non-blocking, so that opening a FIFO or a device returns at once, to be
  // refused below; it changes nothing for a regular file.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  TORCH_CHECK(fd >= 0, "cannot open the checkpoint file '", path, "': ", std::strerror(errno));
  struct stat status {};
  const bool stated = ::fstat(fd, &status) == 0;
  const int stat_error = errno;
  if (!stated || !S_ISREG(status.st_mode)) {
    ::close(fd);
    TORCH_CHECK(stated, "cannot stat the checkpoint file '", path, "': ", std::strerror(stat_error));
    TORCH_CHECK(
        false, "the checkpoint file '", path, "' is ", describe_file_type(status.st_mode), ", not a regular file");
  }
  const auto size = static_cast<uint64_t>(status.st_size);
  void* data = nullptr;
  if (size > 0) {
    // Private and writable: copy-on-write, as torch.load(mmap=True) maps.
    data = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  }
  const int error = errno;
  ::close(fd); // the mapping keeps the file
  TORCH_CHECK(data != MAP_FAILED, "cannot map the checkpoint file '", path, "': ", std::strerror(error));
  return std::shared_ptr<const MappedFile>(new MappedFile(path, static_cast<uint8_t*>(data), size));
}

MappedFile::MappedFile(std::string path, uint8_t* data, uint64_t size)
    : path_(std::move(path)), data_(data), size_(size) {}

MappedFile::~MappedFile() {
  if (data_ != nullptr) {
    ::munmap(data_, size_);
  }
}

void MappedFile::prefetch(uint64_t offset, uint64_t size) const {
#if defined(__linux__) && defined(MADV_POPULATE_READ)
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t begin = offset / page * page;
  const uint64_t end = std::min(size_, offset + size);
  if (end > begin) {
    // Fails with EINVAL on kernels before 5.14; then the reads fault as usual.
    ::madvise(data_ + begin, end - begin, MADV_POPULATE_READ);
  }
#else
  (void)offset;
  (void)size;
#endif
}

} // namespace torch_ext::detail
