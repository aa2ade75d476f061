#include "staged_write.h"

#include <algorithm>
#include <unordered_map>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/pickle/pickler.h"
#include "torch_ext/csrc/torch_save/checkpoint_file_writer.h"

namespace torch_ext::detail {
namespace {

// The writer waits for the copy a piece at a time.
constexpr uint64_t kPieceBytes = uint64_t{4} << 20;

} // namespace

void write_while_staging(
    const std::string& path,
    int64_t rank,
    const c10::IValue& copy,
    const std::vector<c10::Storage>& storages,
    StagingProgress& progress) {
  const PickledState pickled = pickle_state(copy);
  // Where each storage's bytes sit in the order the copy is made.
  std::unordered_map<const c10::StorageImpl*, uint64_t> copied_from;
  uint64_t offset = 0;
  for (const c10::Storage& storage : storages) {
    copied_from.emplace(storage.unsafeGetStorageImpl(), offset);
    offset += storage.nbytes();
  }
  std::vector<uint64_t> sizes;
  for (const c10::Storage& storage : pickled.storages) {
    sizes.push_back(storage.nbytes());
  }
  CheckpointFileWriter out(create_checkpoint_folder(path, rank), pickled.pickle, std::move(sizes));
  for (const c10::Storage& storage : pickled.storages) {
    const auto found = copied_from.find(storage.unsafeGetStorageImpl());
    TORCH_INTERNAL_ASSERT(found != copied_from.end(), "the pickle of a staged copy names a storage the copy lacks");
    const auto* data = static_cast<const char*>(storage.data());
    for (uint64_t done = 0; done < storage.nbytes();) {
      const uint64_t piece = std::min(kPieceBytes, storage.nbytes() - done);
      progress.wait_for(found->second + done + piece);
      out.append(data + done, piece);
      done += piece;
    }
  }
  out.commit();
}

} // namespace torch_ext::detail
