#include "storage_binder.h"

#include <cstddef>
#include <cstring>
#include <memory>

#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

namespace torch_ext::detail {

c10::Storage StorageBinder::placeholder(const std::string& key) {
  const ArchiveReader::Record* record = archive_.find("data/" + key);
  if (record == nullptr) {
    archive_.fail("its pickle names storage '" + key + "', but there is no record 'data/" + key + "'");
  }
  c10::Storage storage(
      c10::Storage::use_byte_size_t(), record->size, c10::DataPtr(nullptr, c10::Device(c10::kCPU)), nullptr, false);
  records_.emplace(storage.unsafeGetStorageImpl(), record);
  return storage;
}

void StorageBinder::tensor(const at::Tensor& tensor) {
  c10::StorageImpl* storage = tensor.storage().unsafeGetStorageImpl();
  const auto found = records_.find(storage);
  TORCH_INTERNAL_ASSERT(found != records_.end());
  if (!bound_.insert(storage).second) {
    return;
  }
  const ArchiveReader::Record& record = *found->second;
  if (verify_) {
    verify(record, path.describe());
  }
  auto* data = const_cast<uint8_t*>(archive_.data() + archive_.data_offset(record));
  if (reinterpret_cast<uintptr_t>(data) % alignof(std::max_align_t) != 0) {
    // Records of torch.save and ours are 64-byte aligned; an archive
    // written otherwise is copied rather than read unaligned.
    c10::DataPtr copy = c10::GetCPUAllocator()->allocate(record.size);
    if (record.size > 0) {
      std::memcpy(copy.get(), data, record.size);
    }
    storage->set_data_ptr_noswap(std::move(copy));
    return;
  }
  // The storage keeps the mapping (or the memory) alive.
  storage->set_data_ptr_noswap(c10::DataPtr(
      data,
      new std::shared_ptr<const void>(archive_.owner()),
      [](void* context) { delete static_cast<std::shared_ptr<const void>*>(context); },
      c10::Device(c10::kCPU)));
}

void StorageBinder::verify(const ArchiveReader::Record& record, const std::string& context) {
  if (verified_.insert(&record).second) {
    archive_.verify(record, context);
  }
}

} // namespace torch_ext::detail
