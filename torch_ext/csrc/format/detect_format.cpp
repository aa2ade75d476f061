#include "detect_format.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include <c10/util/Exception.h>

#include <torch_ext/safetensors.h>

#include "torch_ext/csrc/io/file_type.h"
#include "torch_ext/csrc/io/little_endian.h"
#include "torch_ext/csrc/io/mapped_file.h"
#include "torch_ext/csrc/manager/step_commit.h"

namespace torch_ext::detail {
namespace {

namespace fs = std::filesystem;

constexpr const char* kDcpMetadata = ".metadata";
constexpr const char* kIndexSuffix = ".safetensors.index.json";
constexpr uint64_t kSafetensorsLengthSize = 8;

bool is_regular_file(const std::string& path) {
  struct stat status {};
  return ::stat(path.c_str(), &status) == 0 && S_ISREG(status.st_mode);
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() > suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool starts_like_safetensors(const MappedFile& file) {
  if (file.size() <= kSafetensorsLengthSize) {
    return false;
  }
  const uint64_t header_size = read_le(file.data(), static_cast<int>(kSafetensorsLengthSize));
  return header_size > 0 && header_size <= file.size() - kSafetensorsLengthSize &&
      file.data()[kSafetensorsLengthSize] == '{';
}

// The folder's entries, sorted by name, so that what is named in an error
// does not depend on the order the file system lists them in.
std::vector<fs::directory_entry> list_folder(const std::string& folder) {
  std::vector<fs::directory_entry> entries;
  std::error_code error;
  for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
    entries.push_back(*it);
  }
  TORCH_CHECK(!error, "cannot list the folder '", folder, "': ", error.message());
  std::sort(entries.begin(), entries.end(), [](const fs::directory_entry& a, const fs::directory_entry& b) {
    return a.path().filename() < b.path().filename();
  });
  return entries;
}

// What marks the folder as a checkpoint of each kind it could be: a kind and
// the entry that marks it.
std::vector<std::pair<DiskFormat, std::string>> folder_marks(const std::string& folder) {
  std::vector<std::pair<DiskFormat, std::string>> marks;
  if (is_regular_file((fs::path(folder) / kDcpMetadata).string())) {
    marks.emplace_back(DiskFormat::Dcp, kDcpMetadata);
  }
  if (const std::optional<std::string> index = safetensors_index(folder)) {
    marks.emplace_back(DiskFormat::SafetensorsFolder, fs::path(*index).filename().string());
  } else if (is_regular_file((fs::path(folder) / kSafetensorsSingleName).string())) {
    marks.emplace_back(DiskFormat::SafetensorsFolder, kSafetensorsSingleName);
  }
  for (const fs::directory_entry& entry : list_folder(folder)) {
    std::error_code error;
    if (step_of_folder_name(entry.path().filename().string()) && entry.is_directory(error)) {
      marks.emplace_back(DiskFormat::ManagerRoot, entry.path().filename().string() + "/");
      break;
    }
  }
  return marks;
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
    case DiskFormat::SafetensorsFolder:
      return "a safetensors folder in Hugging Face's layout (an index and its shards, or model.safetensors)";
    case DiskFormat::ManagerRoot:
      return "a CheckpointManager root (a folder of step_<n> folders)";
  }
  return "an unknown format";
}

std::optional<std::string> safetensors_index(const std::string& folder) {
  const std::string standard = (fs::path(folder) / kSafetensorsIndexName).string();
  std::vector<std::string> indexes;
  for (const fs::directory_entry& entry : list_folder(folder)) {
    std::error_code error;
    if (ends_with(entry.path().filename().string(), kIndexSuffix) && entry.is_regular_file(error)) {
      indexes.push_back(entry.path().string());
    }
  }
  if (indexes.empty()) {
    return std::nullopt;
  }
  TORCH_CHECK(
      indexes.size() == 1,
      "the folder '",
      folder,
      "' holds two safetensors indexes, '",
      fs::path(indexes[0]).filename().string(),
      "' and '",
      fs::path(indexes[1]).filename().string(),
      "': it is ambiguous which checkpoint it holds");
  return indexes[0];
}

DiskFormat detect_format(const std::string& path) {
  // stat, unlike open, never blocks (on a FIFO, say).
  struct stat status {};
  TORCH_CHECK(::stat(path.c_str(), &status) == 0, "cannot open the checkpoint file '", path, "': ", std::strerror(errno));
  if (S_ISDIR(status.st_mode)) {
    const std::vector<std::pair<DiskFormat, std::string>> marks = folder_marks(path);
    TORCH_CHECK(
        !marks.empty(),
        "cannot load the checkpoint '",
        path,
        "': it is a folder without the ",
        kDcpMetadata,
        " file of a DCP checkpoint, the *",
        kIndexSuffix,
        " or ",
        kSafetensorsSingleName,
        " of a safetensors folder, or the step_<n> folders of a CheckpointManager root");
    TORCH_CHECK(
        marks.size() == 1,
        "cannot load the checkpoint '",
        path,
        "': it holds '",
        marks[0].second,
        "' and '",
        marks[1].second,
        "', so it would be both ",
        describe_format(marks[0].first),
        " and ",
        describe_format(marks[1].first),
        "; a folder holds one checkpoint");
    return marks[0].first;
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
