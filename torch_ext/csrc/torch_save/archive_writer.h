#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace torch_ext::detail {

// The zip archive torch.save writes: every record stored (not compressed)
// under one folder, its data 64-byte aligned (padding in the local header's
// extra field) so that a reader can map tensors in place, its CRC32 and
// sizes in a data descriptor after the data and in the central directory,
// and zip64 end records. Entries that need zip64 (a size or offset of 4 GiB
// or more) get zip64 extra fields.
class ArchiveWriter {
 public:
  using Sink = std::function<void(const void* data, size_t size)>;

  // `zip64_threshold`: sizes and offsets from which an entry is written with
  // zip64 fields; only tests lower it, to exercise those fields on small
  // files.
  ArchiveWriter(Sink sink, std::string folder, uint64_t zip64_threshold = 0xFFFFFFFFu);

  // Writes `folder/name`, computing its CRC32 as it goes: one pass over the
  // data, a piece at a time while it is in the cache.
  void write_record(std::string_view name, const void* data, size_t size);
  // The same record streamed: its header, then its `size` bytes in as many
  // append() calls as the caller likes, then end_record(). The file is the
  // same as from write_record.
  void begin_record(std::string_view name, uint64_t size);
  void append(const void* data, size_t size);
  void end_record();
  // Writes the central directory and the end records. Nothing may follow.
  void finish();

  static constexpr uint64_t kAlignment = 64;

 private:
  struct Entry {
    std::string name;
    uint64_t header_offset;
    uint64_t size;
    uint32_t crc;
  };
  void emit(const void* data, size_t size);
  bool needs_zip64(const Entry& entry) const;

  Sink sink_;
  std::string folder_;
  uint64_t zip64_threshold_;
  uint64_t position_ = 0;
  std::vector<Entry> entries_;
  std::vector<uint8_t> scratch_;
  // Bytes of the open record still to come, if one is open.
  uint64_t record_left_ = 0;
  bool record_open_ = false;
  bool finished_ = false;
};

} // namespace torch_ext::detail
