#pragma once

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <memory>
#include <string>

#include <torch_ext/dcp.h>

#include "torch_ext/csrc/io/mapped_file.h"
#include "torch_ext/csrc/torch_save/archive_reader.h"

namespace torch_ext::detail::dcp {

// One item of a DCP data file, opened: the archive (torch.save's) in its
// byte range of the mapped file, or in the content of its zstd frames
// (transform_descriptors ["stream.zstd/1"]), at most `content_limit` bytes.
// `what` names it in every error: the key, the folder and the file.
class ItemReader {
 public:
  ItemReader(
      std::shared_ptr<const MappedFile> file,
      const torch_ext::dcp::ItemLocation& location,
      std::string what,
      uint64_t content_limit);

  const std::string& what() const {
    return what_;
  }
  bool compressed() const {
    return compressed_;
  }
  // Checks every record against its CRC32.
  void verify() const;
  // torch.save's value of the item, its storages in place (views of the
  // mapped file, or of the decompressed memory), read when touched.
  c10::IValue value() const;
  // The item's archive, decompressed: what torch.load reads.
  std::string serialized() const;

 private:
  std::string what_;
  bool compressed_ = false;
  std::unique_ptr<ArchiveReader> archive_;
};

} // namespace torch_ext::detail::dcp
