#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "torch_ext/csrc/format/write_plan.h"
#include "torch_ext/csrc/io/durable_file.h"

#include "archive_writer.h"

namespace torch_ext::detail {

// One checkpoint file in torch.save's layout (what write_checkpoint_file
// writes), with the storages' bytes streamed in by the caller: the records
// `data/0`, `data/1`, ... take, in order, the bytes given to append(), so that
// a save need not hold every storage in memory at once. The sink of
// torch.save's write plans (torch_save_format.h). The file appears at
// commit(); destroyed before, it leaves `file` as it was.
class CheckpointFileWriter final : public WriteSink {
 public:
  // Creates the temporary file and writes the records before the storages.
  // `storage_sizes[i]` is the size in bytes of storage key `i`.
  CheckpointFileWriter(const std::string& file, const std::string& pickle, std::vector<uint64_t> storage_sizes);

  // The next `size` bytes of the storages, concatenated in key order; a call
  // may span records.
  void append(const void* data, size_t size) override;
  // Writes the records after the storages and the directory, then makes the
  // file durable (DurableFile::commit). Every storage byte must have come.
  // A torch.save file reports nothing.
  RankWriteResult commit() override;

 private:
  void open_next_records();

  std::string file_;
  DurableFile out_;
  ArchiveWriter archive_;
  std::vector<uint64_t> sizes_;
  size_t next_key_ = 0; // the storage whose record is open, or the next one
  uint64_t record_left_ = 0; // bytes still to come in the open record
  bool record_open_ = false;
  uint64_t left_ = 0;
};

} // namespace torch_ext::detail
