#include "item_reader.h"

#include <string_view>
#include <utility>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/torch_save/checkpoint_file_reader.h"

#include "zstd_stream.h"

namespace torch_ext::detail::dcp {
namespace {

// `stream.zstd/<version>`: upstream's ZStandard reads major version 1.
bool is_zstd(const std::string& descriptor) {
  constexpr std::string_view kName = "stream.zstd/";
  if (descriptor.compare(0, kName.size(), kName) != 0) {
    return false;
  }
  const std::string version = descriptor.substr(kName.size());
  return version.substr(0, version.find('.')) == "1";
}

} // namespace

ItemReader::ItemReader(
    std::shared_ptr<const MappedFile> file,
    const torch_ext::dcp::ItemLocation& location,
    std::string what,
    uint64_t content_limit)
    : what_(std::move(what)) {
  TORCH_CHECK(
      location.offset <= file->size() && location.length <= file->size() - location.offset,
      what_,
      " lies past the end of '",
      file->path(),
      "', which has ",
      file->size(),
      " bytes (truncated?)");
  for (const std::string& descriptor : location.transform_descriptors) {
    TORCH_CHECK(
        is_zstd(descriptor),
        what_,
        " is stored through the transform '",
        descriptor,
        "'; torch_ext reads items stored as they are or through '",
        torch_ext::dcp::kZstdDescriptor,
        "'");
  }
  if (location.transform_descriptors.empty()) {
    archive_ = std::make_unique<ArchiveReader>(file, location.offset, location.length, what_);
    return;
  }
  // Each descriptor undoes one zstd compression.
  compressed_ = true;
  std::string content = zstd_decompress(
      std::string_view(reinterpret_cast<const char*>(file->data() + location.offset), location.length),
      content_limit,
      what_);
  for (size_t i = 1; i < location.transform_descriptors.size(); ++i) {
    content = zstd_decompress(content, content_limit, what_);
  }
  archive_ = std::make_unique<ArchiveReader>(std::make_shared<const std::string>(std::move(content)), what_);
}

void ItemReader::verify() const {
  for (const ArchiveReader::Record& record : archive_->records()) {
    archive_->verify(record);
  }
}

c10::IValue ItemReader::value() const {
  return read_torch_save_archive(*archive_, ReadOptions{/*verify=*/false, {}}, what_);
}

std::string ItemReader::serialized() const {
  return std::string(reinterpret_cast<const char*>(archive_->data()), archive_->size());
}

} // namespace torch_ext::detail::dcp
