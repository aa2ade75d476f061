#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch_ext/export.h>

#include "torch_ext/csrc/format/write_plan.h"

namespace torch_ext::detail {

// A contiguous CPU tensor of `dtype` and `sizes` over a storage of its byte
// size that holds no data: a tensor of the state a TorchSaveFileWriter
// plans, whose bytes it takes later.
TORCH_EXT_API at::Tensor planned_tensor(c10::ScalarType dtype, c10::IntArrayRef sizes);

// A torch.save file (what write_checkpoint_file writes) written storage by
// storage, so that a conversion holds a few tensors at a time rather than
// the state: the state is planned first (plan_torch_save_file, which reads
// its storages' sizes only), then write() takes the bytes of each storage
// that has none yet (a planned_tensor()'s) in the plan's order(); a storage
// that holds its data is written from it. Tensors that share a storage
// share it in the file. The file appears at commit(); destroyed or failed
// before, it leaves `file` as it was. Exported for the Python module; not a
// public API.
class TORCH_EXT_API TorchSaveFileWriter {
 public:
  // Refuses what write_checkpoint_file refuses, before creating anything.
  TorchSaveFileWriter(const std::string& file, const c10::IValue& state);
  TorchSaveFileWriter(const TorchSaveFileWriter&) = delete;
  TorchSaveFileWriter& operator=(const TorchSaveFileWriter&) = delete;
  ~TorchSaveFileWriter();

  // The key path (key_path.h) of the first tensor of each storage without
  // data, in the order write() takes their bytes.
  const std::vector<std::string>& order() const {
    return order_;
  }
  // The bytes of the next storage of order(): a CPU tensor of its dtype and
  // byte size (any strides: written in row-major order).
  void write(const at::Tensor& tensor);
  // After the last of order(): makes the file durable.
  void commit();

 private:
  struct Storage {
    std::string key;
    c10::ScalarType dtype;
    uint64_t nbytes;
    bool planned; // its bytes come through write()
    c10::Storage storage;
  };
  // Appends the storages before the next planned one, from their own data.
  void write_held();
  void append(const void* data, size_t size);

  std::string file_;
  std::vector<std::string> order_;
  std::vector<Storage> storages_;
  std::unique_ptr<WriteSink> sink_; // null once committed or failed
  size_t next_ = 0; // in storages_
  size_t written_ = 0; // of order_
};

} // namespace torch_ext::detail
