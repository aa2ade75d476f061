#include "durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include <c10/util/Exception.h>

namespace torch_ext::detail {
namespace {

// The disk starts writing every this many bytes, so that it works while we
// still copy and the final fsync waits only for the tail.
constexpr uint64_t kWritebackBytes = uint64_t{8} << 20;
constexpr const char* kTemporarySuffix = ".tmp";

std::string temporary_path_for(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  const std::filesystem::path target(path);
  return (target.parent_path() /
          ("." + target.filename().string() + "." + std::to_string(::getpid()) + "." +
           std::to_string(counter++) + kTemporarySuffix))
      .string();
}

} // namespace

void fsync_folder(const std::string& folder, const std::string& path) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  TORCH_CHECK(
      fd >= 0, "cannot open the folder '", folder, "' to fsync it after updating '", path, "': ", std::strerror(errno));
  const int result = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  TORCH_CHECK(result == 0, "fsync of the folder '", folder, "' after updating '", path, "' failed: ", std::strerror(error));
}

DurableFile::DurableFile(std::string path, bool sync)
    : path_(std::move(path)), temporary_path_(temporary_path_for(path_)), sync_(sync) {
  fd_ = ::open(temporary_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  TORCH_CHECK(
      fd_ >= 0, "cannot create a temporary file '", temporary_path_, "' to write '", path_, "': ", std::strerror(errno));
}

DurableFile::~DurableFile() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
  if (!committed_) {
    ::unlink(temporary_path_.c_str());
  }
}

void DurableFile::write(const void* data, size_t size) {
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(size, kWritebackBytes));
    const ssize_t written = ::write(fd_, bytes, chunk);
    if (written < 0 && errno == EINTR) {
      continue;
    }
    TORCH_CHECK(
        written >= 0, "writing '", path_, "' failed: ", std::strerror(errno), "; the file is left as it was before");
    bytes += written;
    size -= static_cast<size_t>(written);
    position_ += static_cast<uint64_t>(written);
    if (sync_ && position_ - written_back_ >= kWritebackBytes) {
      start_writeback();
    }
  }
}

void DurableFile::write_at(uint64_t offset, const void* data, size_t size) {
  TORCH_CHECK(offset + size <= position_, "DurableFile::write_at past the bytes written to '", path_, "'");
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t written = ::pwrite(fd_, bytes, size, static_cast<off_t>(offset));
    if (written < 0 && errno == EINTR) {
      continue;
    }
    TORCH_CHECK(
        written >= 0, "writing '", path_, "' failed: ", std::strerror(errno), "; the file is left as it was before");
    bytes += written;
    offset += static_cast<uint64_t>(written);
    size -= static_cast<size_t>(written);
  }
}

void DurableFile::start_writeback() {
#ifdef __linux__
  // A hint: fsync reports the errors.
  ::sync_file_range(
      fd_,
      static_cast<off_t>(written_back_),
      static_cast<off_t>(position_ - written_back_),
      SYNC_FILE_RANGE_WRITE);
#endif
  written_back_ = position_;
}

void DurableFile::commit() {
  TORCH_CHECK(!sync_ || ::fsync(fd_) == 0, "fsync of '", path_, "' failed: ", std::strerror(errno));
  const int fd = std::exchange(fd_, -1);
  TORCH_CHECK(::close(fd) == 0, "closing '", path_, "' failed: ", std::strerror(errno));
  TORCH_CHECK(
      ::rename(temporary_path_.c_str(), path_.c_str()) == 0,
      "cannot rename '",
      temporary_path_,
      "' to '",
      path_,
      "': ",
      std::strerror(errno));
  committed_ = true;
  if (!sync_) {
    return;
  }
  const std::string folder = std::filesystem::path(path_).parent_path().string();
  fsync_folder(folder.empty() ? "." : folder, path_);
}

bool DurableFile::is_temporary_name(const std::string& file_name) {
  const size_t suffix = std::strlen(kTemporarySuffix);
  return file_name.size() > suffix + 1 && file_name[0] == '.' &&
      file_name.compare(file_name.size() - suffix, suffix, kTemporarySuffix) == 0;
}

} // namespace torch_ext::detail
