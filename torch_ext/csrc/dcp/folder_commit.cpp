// The commit rule of a DCP folder (dcp.h: prepare_folder, commit_metadata).
#include <torch_ext/dcp.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <unistd.h>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/io/durable_file.h"

namespace torch_ext::dcp {

void prepare_folder(const std::string& folder) {
  TORCH_CHECK_VALUE(!folder.empty(), "a DCP checkpoint needs a folder, got ''");
  std::error_code error;
  std::filesystem::create_directories(folder, error);
  TORCH_CHECK(!error, "cannot create the DCP checkpoint folder '", folder, "': ", error.message());
  const std::string metadata = (std::filesystem::path(folder) / kMetadataFileName).string();
  if (::unlink(metadata.c_str()) == 0) {
    detail::fsync_folder(folder, metadata);
  } else {
    TORCH_CHECK(errno == ENOENT, "cannot remove the previous commit '", metadata, "': ", std::strerror(errno));
  }
}

void commit_metadata(const std::string& folder, const Metadata& metadata, bool sync) {
  const std::string pickle = pickle_metadata(metadata);
  detail::DurableFile out((std::filesystem::path(folder) / kMetadataFileName).string(), sync);
  out.write(pickle.data(), pickle.size());
  out.commit();
}

} // namespace torch_ext::dcp
