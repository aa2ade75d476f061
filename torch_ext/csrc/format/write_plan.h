#pragma once

#include <c10/core/Storage.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch_ext/export.h>

namespace torch_ext::detail {

// Bytes [offset, offset + size) of a storage.
struct StorageSlice {
  c10::Storage storage;
  uint64_t offset = 0;
  uint64_t size = 0;
};

// What one rank's write reports once its output is durable, for a step that
// joins the ranks' parts into one checkpoint: nothing for torch.save, the
// only format written through it so far (CheckpointFormat).
using RankWriteResult = std::string;

// Where a plan's output goes: the bytes of the plan's slices, concatenated
// in order, through append() (a call may span slices), then commit().
// Destroyed before commit(), it leaves what was on disk as it was.
class WriteSink {
 public:
  virtual ~WriteSink() = default;
  virtual void append(const void* data, size_t size) = 0;
  // After the last byte: makes the output durable.
  virtual RankWriteResult commit() = 0;
};

// What a format writes of one rank's state, decided before any byte of it
// is copied: all but the storages' bytes (a pickle, a header, file names),
// and the slices of the planned state's storages whose bytes it takes, in
// the order it takes them. Those storages may have their sizes and no data:
// a save plans first, then stages the bytes the plan asks for, in its order.
class TORCH_EXT_API WritePlan {
 public:
  explicit WritePlan(std::vector<StorageSlice> slices);
  virtual ~WritePlan() = default;
  WritePlan(const WritePlan&) = delete;
  WritePlan& operator=(const WritePlan&) = delete;

  const std::vector<StorageSlice>& slices() const {
    return slices_;
  }
  // The slices' bytes, all together.
  uint64_t bytes() const {
    return bytes_;
  }
  // Creates the output (folders, temporary files) and the sink that takes
  // the slices' bytes. Called by the writer: what fails here is the write.
  virtual std::unique_ptr<WriteSink> open() const = 0;

 private:
  std::vector<StorageSlice> slices_;
  uint64_t bytes_ = 0;
};

// The bytes of a plan's slices, concatenated, handed to the writer in
// order as they become ready: as a copy stages them, or where they are.
class PlanBytes {
 public:
  struct Span {
    const void* data;
    size_t size;
  };
  virtual ~PlanBytes() = default;
  // The next bytes (at least one), once they are ready; called only while
  // some remain.
  virtual Span next() = 0;
  // The span that next() returned last is written: its memory may be reused.
  virtual void written() {}
};

// The write of every save, whichever the format and however the bytes are
// staged: opens the plan's sink, streams all of `bytes` into it, commits.
RankWriteResult write_plan(const WritePlan& plan, PlanBytes& bytes);

// write_plan with the bytes read where they are, in the slices' storages,
// which must hold their data: a synchronous write of the caller's state.
RankWriteResult write_plan_in_place(const WritePlan& plan);

} // namespace torch_ext::detail
