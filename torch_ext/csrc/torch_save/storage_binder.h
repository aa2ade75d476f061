#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Storage.h>

#include <string>
#include <unordered_map>
#include <unordered_set>

#include "torch_ext/csrc/state/state_value.h"

#include "archive_reader.h"

namespace torch_ext::detail {

// The storage records of a load, bound to tensors once it is known which are
// read: until then a storage has its size and no data.
class StorageBinder : public TensorVisitor {
 public:
  StorageBinder(const ArchiveReader& archive, bool verify) : archive_(archive), verify_(verify) {}

  // A storage of the size of record `data/<key>`, without its data.
  c10::Storage placeholder(const std::string& key);

  // Visits the value a load returns, binding each storage it reaches to
  // its record (verified first, with the entry's name for the error).
  void tensor(const at::Tensor& tensor);

  // Checks the record's CRC32, once per record.
  void verify(const ArchiveReader::Record& record, const std::string& context = "");

  KeyPath path;

 private:
  const ArchiveReader& archive_;
  const bool verify_;
  std::unordered_map<const c10::StorageImpl*, const ArchiveReader::Record*> records_;
  std::unordered_set<const c10::StorageImpl*> bound_;
  std::unordered_set<const ArchiveReader::Record*> verified_;
};

} // namespace torch_ext::detail
