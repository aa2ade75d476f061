#include "archive_writer.h"

#include <algorithm>
#include <utility>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/io/crc32.h"

#include "zip_format.h"

namespace torch_ext::detail {
namespace {

// The CRC32 is computed on each piece just before it is written, while it is
// still in the cache.
constexpr size_t kPieceBytes = size_t{1} << 20;

} // namespace

ArchiveWriter::ArchiveWriter(Sink sink, std::string folder, uint64_t zip64_threshold)
    : sink_(std::move(sink)), folder_(std::move(folder)), zip64_threshold_(zip64_threshold) {}

void ArchiveWriter::emit(const void* data, size_t size) {
  sink_(data, size);
  position_ += size;
}

bool ArchiveWriter::needs_zip64(const Entry& entry) const {
  return entry.size >= zip64_threshold_ || entry.header_offset >= zip64_threshold_;
}

void ArchiveWriter::write_record(std::string_view name, const void* data, size_t size) {
  begin_record(name, size);
  append(data, size);
  end_record();
}

void ArchiveWriter::begin_record(std::string_view name, uint64_t size) {
  TORCH_INTERNAL_ASSERT(!finished_, "ArchiveWriter::begin_record after finish()");
  TORCH_INTERNAL_ASSERT(!record_open_, "ArchiveWriter::begin_record before end_record()");
  Entry entry{folder_ + "/" + std::string(name), position_, size, 0};
  const bool zip64_sizes = entry.size >= zip64_threshold_;

  scratch_.clear();
  zip::Bytes header(scratch_);
  header.u32(zip::kLocalHeaderSignature)
      .u16(needs_zip64(entry) ? zip::kZip64Version : 0)
      .u16(zip::kFlags)
      .u16(zip::kStored)
      .u16(0) // time
      .u16(0) // date
      .u32(0) // CRC32: in the data descriptor
      .u32(zip64_sizes ? zip::kMax32 : 0)
      .u32(zip64_sizes ? zip::kMax32 : 0);
  const size_t zip64_extra = zip64_sizes ? 4 + 16 : 0;
  const uint64_t unpadded = entry.header_offset + zip::kLocalHeaderSize + entry.name.size() + zip64_extra + 4;
  const size_t padding = static_cast<size_t>((kAlignment - unpadded % kAlignment) % kAlignment);
  header.u16(static_cast<uint16_t>(entry.name.size()))
      .u16(static_cast<uint16_t>(zip64_extra + 4 + padding))
      .raw(entry.name.data(), entry.name.size());
  if (zip64_sizes) {
    header.u16(zip::kZip64ExtraId).u16(16).u64(size).u64(size);
  }
  header.u16(zip::kPaddingExtraId).u16(static_cast<uint16_t>(padding)).zeros(padding);
  emit(scratch_.data(), scratch_.size());
  entries_.push_back(std::move(entry));
  record_left_ = size;
  record_open_ = true;
}

void ArchiveWriter::append(const void* data, size_t size) {
  TORCH_INTERNAL_ASSERT(
      record_open_ && size <= record_left_, "ArchiveWriter::append past the size given to begin_record");
  Entry& entry = entries_.back();
  const auto* bytes = static_cast<const uint8_t*>(data);
  for (size_t offset = 0; offset < size; offset += kPieceBytes) {
    const size_t piece = std::min(kPieceBytes, size - offset);
    entry.crc = crc32(entry.crc, bytes + offset, piece);
    emit(bytes + offset, piece);
  }
  record_left_ -= size;
}

void ArchiveWriter::end_record() {
  TORCH_INTERNAL_ASSERT(
      record_open_ && record_left_ == 0, "ArchiveWriter::end_record before all the record's bytes were appended");
  record_open_ = false;
  const Entry& entry = entries_.back();
  scratch_.clear();
  zip::Bytes descriptor(scratch_);
  descriptor.u32(zip::kDataDescriptorSignature).u32(entry.crc);
  if (entry.size >= zip64_threshold_) {
    descriptor.u64(entry.size).u64(entry.size);
  } else {
    descriptor.u32(static_cast<uint32_t>(entry.size)).u32(static_cast<uint32_t>(entry.size));
  }
  emit(scratch_.data(), scratch_.size());
}

void ArchiveWriter::finish() {
  TORCH_INTERNAL_ASSERT(!finished_, "ArchiveWriter::finish called twice");
  TORCH_INTERNAL_ASSERT(!record_open_, "ArchiveWriter::finish before end_record()");
  finished_ = true;
  const uint64_t directory_offset = position_;
  scratch_.clear();
  zip::Bytes directory(scratch_);
  for (const Entry& entry : entries_) {
    const bool zip64_sizes = entry.size >= zip64_threshold_;
    const bool zip64_offset = entry.header_offset >= zip64_threshold_;
    const uint16_t version = needs_zip64(entry) ? zip::kZip64Version : 0;
    const size_t zip64_extra = (zip64_sizes ? 16 : 0) + (zip64_offset ? 8 : 0);
    directory.u32(zip::kCentralHeaderSignature)
        .u16(version) // made by
        .u16(version) // needed to extract
        .u16(zip::kFlags)
        .u16(zip::kStored)
        .u16(0) // time
        .u16(0) // date
        .u32(entry.crc)
        .u32(zip64_sizes ? zip::kMax32 : static_cast<uint32_t>(entry.size))
        .u32(zip64_sizes ? zip::kMax32 : static_cast<uint32_t>(entry.size))
        .u16(static_cast<uint16_t>(entry.name.size()))
        .u16(static_cast<uint16_t>(zip64_extra > 0 ? 4 + zip64_extra : 0))
        .u16(0) // comment
        .u16(0) // disk
        .u16(0) // internal attributes
        .u32(0) // external attributes
        .u32(zip64_offset ? zip::kMax32 : static_cast<uint32_t>(entry.header_offset))
        .raw(entry.name.data(), entry.name.size());
    if (zip64_extra > 0) {
      // The fields set to kMax32 above, in this order.
      directory.u16(zip::kZip64ExtraId).u16(static_cast<uint16_t>(zip64_extra));
      if (zip64_sizes) {
        directory.u64(entry.size).u64(entry.size);
      }
      if (zip64_offset) {
        directory.u64(entry.header_offset);
      }
    }
  }
  const uint64_t directory_size = scratch_.size();
  const uint64_t zip64_end_offset = directory_offset + directory_size;
  const uint64_t count = entries_.size();
  // Zip64 end records always, as torch.save writes them.
  directory.u32(zip::kZip64EndSignature)
      .u64(zip::kZip64EndSize - 12)
      .u16(zip::kZip64Version)
      .u16(zip::kZip64Version)
      .u32(0)
      .u32(0)
      .u64(count)
      .u64(count)
      .u64(directory_size)
      .u64(directory_offset);
  directory.u32(zip::kZip64LocatorSignature).u32(0).u64(zip64_end_offset).u32(1);
  const auto field32 = [&](uint64_t value) {
    return value >= zip64_threshold_ ? zip::kMax32 : static_cast<uint32_t>(value);
  };
  const uint16_t count16 = count >= zip::kMax16 ? zip::kMax16 : static_cast<uint16_t>(count);
  directory.u32(zip::kEndSignature)
      .u16(0)
      .u16(0)
      .u16(count16)
      .u16(count16)
      .u32(field32(directory_size))
      .u32(field32(directory_offset))
      .u16(0);
  emit(scratch_.data(), scratch_.size());
}

} // namespace torch_ext::detail
