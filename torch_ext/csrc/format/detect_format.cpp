#include "detect_format.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/io/file_type.h"
#include "torch_ext/csrc/io/mapped_file.h"

namespace torch_ext::detail {
namespace {

constexpr const char* kDcpMetadata = ".metadata";
constexpr uint64_t kSafetensorsLengthSize = 8;

bool is_regular_file(const std::string& path) {
  struct stat status {};
  return ::stat(path.c_str(), &status) == 0 && S_ISREG(status.st_mode);
}

bool starts_like_safetensors(const MappedFile& file) {
  if (file.size() <= kSafetensorsLengthSize) {
    return false;
  }
  uint64_t header_size = 0;
  for (int i = static_cast<int>(kSafetensorsLengthSize) - 1; i >= 0; --i) {
    header_size = (header_size << 8) | file.data()[i];
  }
  return header_size > 0 && header_size <= file.size() - kSafetensorsLengthSize &&
      file.data()[kSafetensorsLengthSize] == '{';
}

} // namespace

std::string describe_format(DiskFormat format) {
  switch (format) {
    case DiskFormat::TorchSave:
      return "a torch.save file";
    case DiskFormat::Dcp:
      return "a DCP checkpoint (a folder holding .metadata)";
    case DiskFormat::Safetensors:
      return "a safetensors file";
  }
  return "an unknown format";
}

DiskFormat detect_format(const std::string& path) {
  // stat, unlike open, never blocks (on a FIFO, say).
  struct stat status {};
  TORCH_CHECK(::stat(path.c_str(), &status) == 0, "cannot open the checkpoint file '", path, "': ", std::strerror(errno));
  if (S_ISDIR(status.st_mode)) {
    TORCH_CHECK(
        is_regular_file((std::filesystem::path(path) / kDcpMetadata).string()),
        "cannot load the checkpoint '",
        path,
        "': it is a folder without the ",
        kDcpMetadata,
        " file of a DCP checkpoint; a checkpoint is a torch.save file, a safetensors file or a DCP checkpoint's folder");
    return DiskFormat::Dcp;
  }
  TORCH_CHECK(
      S_ISREG(status.st_mode),
      "cannot load the checkpoint file '",
      path,
      "': it is ",
      describe_file_type(status.st_mode),
      ", not a regular file or a folder");
  return starts_like_safetensors(*MappedFile::open(path)) ? DiskFormat::Safetensors : DiskFormat::TorchSave;
}

} // namespace torch_ext::detail
