#include <torch_ext/checkpoint_file.h>

#include <cstring>
#include <filesystem>
#include <unordered_map>
#include <unordered_set>

#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include "torch_ext/csrc/format/write_plan.h"
#include "torch_ext/csrc/io/mapped_file.h"
#include "torch_ext/csrc/pickle/torch_globals.h"
#include "torch_ext/csrc/state/select_keys.h"
#include "torch_ext/csrc/state/state_value.h"

#include "archive_reader.h"
#include "torch_save_format.h"

namespace torch_ext {
namespace {

using detail::ArchiveReader;
using detail::MappedFile;

// The storage records of a load, bound to tensors once it is known which are
// read: until then a storage has its size and no data.
class StorageBinder : public detail::TensorVisitor {
 public:
  StorageBinder(const ArchiveReader& archive, bool verify) : archive_(archive), verify_(verify) {}

  c10::Storage placeholder(const std::string& key) {
    const ArchiveReader::Record* record = archive_.find("data/" + key);
    if (record == nullptr) {
      archive_.fail("its pickle names storage '" + key + "', but there is no record 'data/" + key + "'");
    }
    c10::Storage storage(
        c10::Storage::use_byte_size_t(), record->size, c10::DataPtr(nullptr, c10::Device(c10::kCPU)), nullptr, false);
    records_.emplace(storage.unsafeGetStorageImpl(), record);
    return storage;
  }

  // Visits the value a load returns, binding each storage it reaches to
  // its record (verified first, with the entry's name for the error).
  void tensor(const at::Tensor& tensor) {
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
    const std::shared_ptr<const MappedFile>& file = archive_.file();
    auto* data = const_cast<uint8_t*>(file->data() + archive_.data_offset(record));
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
    // The storage keeps the mapping alive.
    storage->set_data_ptr_noswap(c10::DataPtr(
        data,
        new std::shared_ptr<const MappedFile>(file),
        [](void* context) { delete static_cast<std::shared_ptr<const MappedFile>*>(context); },
        c10::Device(c10::kCPU)));
  }

  void verify(const ArchiveReader::Record& record, const std::string& context = "") {
    if (verified_.insert(&record).second) {
      archive_.verify(record, context);
    }
  }

  detail::KeyPath path;

 private:
  const ArchiveReader& archive_;
  const bool verify_;
  std::unordered_map<const c10::StorageImpl*, const ArchiveReader::Record*> records_;
  std::unordered_set<const c10::StorageImpl*> bound_;
  std::unordered_set<const ArchiveReader::Record*> verified_;
};

const ArchiveReader::Record& required_record(const ArchiveReader& archive, const std::string& name) {
  const ArchiveReader::Record* record = archive.find(name);
  if (record == nullptr) {
    archive.fail("it has no record '" + name + "', which torch.save writes");
  }
  return *record;
}

std::string_view record_text(const ArchiveReader& archive, const ArchiveReader::Record& record) {
  return {reinterpret_cast<const char*>(archive.file()->data() + archive.data_offset(record)), record.size};
}

} // namespace

void write_checkpoint_file(const std::string& file, const c10::IValue& state_dict) {
  TORCH_CHECK_VALUE(!file.empty(), "write_checkpoint_file expected a file name, got ''");
  // Unsupported values fail in the plan, before any file is created.
  detail::write_plan_in_place(*detail::plan_torch_save_file(file, state_dict));
}

c10::IValue read_checkpoint_file(const std::string& file, const ReadOptions& options) {
  const ArchiveReader archive(MappedFile::open(file));
  StorageBinder binder(archive, options.verify);
  const ArchiveReader::Record& pickle = required_record(archive, "data.pkl");
  if (options.verify) {
    binder.verify(pickle);
  }
  if (const ArchiveReader::Record* byteorder = archive.find("byteorder")) {
    if (options.verify) {
      binder.verify(*byteorder);
    }
    if (record_text(archive, *byteorder) != "little") {
      archive.fail("its tensors are big-endian; only little-endian checkpoints are read");
    }
  }

  c10::IValue state = detail::unpickle_state(
      record_text(archive, pickle),
      [&binder](const std::string& key) { return binder.placeholder(key); },
      [&file](const std::string& what) { TORCH_CHECK(false, "cannot load the checkpoint file '", file, "': ", what); });
  if (!options.keys.empty()) {
    state = detail::select_keys(state, options.keys, file);
  }
  detail::visit_state(state, binder, binder.path);

  if (options.verify && options.keys.empty()) {
    // A whole load checks every record, read or not.
    for (const ArchiveReader::Record& record : archive.records()) {
      binder.verify(record);
    }
  }
  return state;
}

std::string checkpoint_file_path(const std::string& path, int64_t rank) {
  return (std::filesystem::path(path) / ("checkpoint_" + std::to_string(rank) + ".pt")).string();
}

void write_checkpoint(const std::string& path, int64_t rank, const c10::IValue& state_dict) {
  detail::write_plan_in_place(*detail::torch_save_format()->plan(path, rank, state_dict));
}

c10::IValue read_checkpoint(const std::string& path, int64_t rank, const ReadOptions& options) {
  return read_checkpoint_file(checkpoint_file_path(path, rank), options);
}

} // namespace torch_ext
