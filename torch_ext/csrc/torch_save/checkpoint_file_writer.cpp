#include "checkpoint_file_writer.h"

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <utility>

#include <c10/util/Exception.h>

namespace torch_ext::detail {
namespace {

// torch.save names the archive's folder after the file.
std::string archive_folder(const std::string& file) {
  std::string folder = std::filesystem::path(file).stem().string();
  return folder.empty() ? "archive" : folder;
}

} // namespace

CheckpointFileWriter::CheckpointFileWriter(
    const std::string& file,
    const std::string& pickle,
    std::vector<uint64_t> storage_sizes)
    : file_(file),
      out_(file),
      archive_([this](const void* data, size_t size) { out_.write(data, size); }, archive_folder(file)),
      sizes_(std::move(storage_sizes)),
      left_(std::accumulate(sizes_.begin(), sizes_.end(), uint64_t{0})) {
  // The records torch.save writes, in its order.
  archive_.write_record("data.pkl", pickle.data(), pickle.size());
  archive_.write_record(".format_version", "1", 1);
  archive_.write_record(".storage_alignment", "64", 2);
  archive_.write_record("byteorder", "little", 6);
  open_next_records();
}

void CheckpointFileWriter::open_next_records() {
  // Empty storages have their record too, with no bytes to wait for.
  while (!record_open_ && next_key_ < sizes_.size()) {
    archive_.begin_record("data/" + std::to_string(next_key_), sizes_[next_key_]);
    record_left_ = sizes_[next_key_];
    record_open_ = true;
    if (record_left_ == 0) {
      archive_.end_record();
      record_open_ = false;
      ++next_key_;
    }
  }
}

void CheckpointFileWriter::append(const void* data, size_t size) {
  TORCH_INTERNAL_ASSERT(size <= left_, "CheckpointFileWriter::append past the storages' bytes for '", file_, "'");
  const auto* bytes = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const auto piece = static_cast<size_t>(std::min<uint64_t>(size, record_left_));
    archive_.append(bytes, piece);
    bytes += piece;
    size -= piece;
    left_ -= piece;
    record_left_ -= piece;
    if (record_left_ == 0) {
      archive_.end_record();
      record_open_ = false;
      ++next_key_;
      open_next_records();
    }
  }
}

RankWriteResult CheckpointFileWriter::commit() {
  TORCH_INTERNAL_ASSERT(
      left_ == 0 && !record_open_, "CheckpointFileWriter::commit with ", left_, " storage bytes of '", file_, "' missing");
  archive_.write_record("version", "3\n", 2);
  archive_.finish();
  out_.commit();
  return {};
}

} // namespace torch_ext::detail
