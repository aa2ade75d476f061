#include "write_plan.h"

#include <utility>

#include <c10/util/Exception.h>

namespace torch_ext::detail {
namespace {

// The slices' bytes in their own storages.
class InPlaceBytes final : public PlanBytes {
 public:
  explicit InPlaceBytes(const std::vector<StorageSlice>& slices) : slices_(slices) {}

  Span next() override {
    while (slices_[next_].size == 0) {
      ++next_;
    }
    const StorageSlice& slice = slices_[next_++];
    return {static_cast<const char*>(slice.storage.data()) + slice.offset, static_cast<size_t>(slice.size)};
  }

 private:
  const std::vector<StorageSlice>& slices_;
  size_t next_ = 0;
};

} // namespace

WritePlan::WritePlan(std::vector<StorageSlice> slices) : slices_(std::move(slices)) {
  for (const StorageSlice& slice : slices_) {
    TORCH_INTERNAL_ASSERT(
        slice.offset + slice.size <= slice.storage.nbytes(), "a write plan's slice runs past the end of its storage");
    bytes_ += slice.size;
  }
}

RankWriteResult write_plan(const WritePlan& plan, PlanBytes& bytes) {
  const std::unique_ptr<WriteSink> sink = plan.open();
  for (uint64_t left = plan.bytes(); left > 0;) {
    const PlanBytes::Span span = bytes.next();
    TORCH_INTERNAL_ASSERT(span.size > 0 && span.size <= left, "the staged bytes of a save do not match its write plan");
    sink->append(span.data, span.size);
    bytes.written();
    left -= span.size;
  }
  return sink->commit();
}

RankWriteResult write_plan_in_place(const WritePlan& plan) {
  InPlaceBytes bytes(plan.slices());
  return write_plan(plan, bytes);
}

} // namespace torch_ext::detail
