#include "torch_save_file_writer.h"

#include <sstream>
#include <unordered_map>
#include <utility>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <c10/util/accumulate.h>

#include "torch_ext/csrc/state/state_value.h"

#include "torch_save_format.h"

namespace torch_ext::detail {
namespace {

// The key path and dtype of each storage's first tensor, as the walk meets them.
struct FirstTensors : TensorVisitor {
  struct First {
    std::string key;
    c10::ScalarType dtype;
  };

  void tensor(const at::Tensor& tensor) {
    firsts.try_emplace(tensor.storage().unsafeGetStorageImpl(), First{path.str(), tensor.scalar_type()});
  }

  KeyPath path;
  std::unordered_map<const c10::StorageImpl*, First> firsts;
};

std::string describe(const at::Tensor& tensor) {
  std::ostringstream text;
  text << "a " << tensor.device() << " tensor of " << tensor.scalar_type() << " and " << tensor.nbytes() << " bytes";
  return text.str();
}

} // namespace

at::Tensor planned_tensor(c10::ScalarType dtype, c10::IntArrayRef sizes) {
  const uint64_t nbytes = c10::multiply_integers(sizes) * c10::elementSize(dtype);
  c10::Storage storage(
      c10::Storage::use_byte_size_t(), nbytes, c10::DataPtr(nullptr, c10::Device(c10::kCPU)), nullptr, false);
  at::Tensor tensor = at::empty({0}, at::TensorOptions().dtype(dtype));
  tensor.set_(std::move(storage), 0, sizes);
  return tensor;
}

TorchSaveFileWriter::TorchSaveFileWriter(const std::string& file, const c10::IValue& state) : file_(file) {
  TORCH_CHECK_VALUE(!file.empty(), "TorchSaveFileWriter expected a file name, got ''");
  const std::unique_ptr<WritePlan> plan = plan_torch_save_file(file, state);
  FirstTensors firsts;
  visit_state(state, firsts, firsts.path);
  for (const StorageSlice& slice : plan->slices()) {
    const FirstTensors::First& first = firsts.firsts.at(slice.storage.unsafeGetStorageImpl());
    const bool planned = slice.size > 0 && slice.storage.data() == nullptr;
    if (planned) {
      order_.push_back(first.key);
    }
    storages_.push_back({first.key, first.dtype, slice.size, planned, slice.storage});
  }
  sink_ = plan->open();
}

TorchSaveFileWriter::~TorchSaveFileWriter() = default;

void TorchSaveFileWriter::write(const at::Tensor& tensor) {
  TORCH_CHECK(sink_ != nullptr, "the torch.save file '", file_, "' is committed or failed: it takes no more tensors");
  TORCH_CHECK_VALUE(
      written_ < order_.size(), "the torch.save file '", file_, "' has all its ", order_.size(), " tensors written");
  write_held();
  const Storage& planned = storages_[next_];
  TORCH_CHECK_VALUE(
      tensor.defined() && tensor.layout() == at::kStrided && tensor.device().is_cpu() &&
          tensor.scalar_type() == planned.dtype && tensor.nbytes() == planned.nbytes,
      "the torch.save file '",
      file_,
      "' expected entry '",
      planned.key,
      "' as a CPU tensor of ",
      planned.dtype,
      " and ",
      planned.nbytes,
      " bytes, got ",
      tensor.defined() ? describe(tensor) : "an undefined tensor");
  const at::Tensor bytes = tensor.resolve_conj().resolve_neg().contiguous();
  append(bytes.const_data_ptr(), bytes.nbytes());
  ++next_;
  ++written_;
}

void TorchSaveFileWriter::commit() {
  TORCH_CHECK(sink_ != nullptr, "the torch.save file '", file_, "' is committed or failed: nothing to commit");
  TORCH_CHECK_VALUE(
      written_ == order_.size(),
      "the torch.save file '",
      file_,
      "' is missing ",
      order_.size() - written_,
      " of its tensors, from entry '",
      written_ < order_.size() ? order_[written_] : "",
      "'");
  write_held();
  const std::unique_ptr<WriteSink> sink = std::move(sink_);
  sink->commit();
}

void TorchSaveFileWriter::write_held() {
  for (; next_ < storages_.size() && !storages_[next_].planned; ++next_) {
    const Storage& held = storages_[next_];
    if (held.nbytes > 0) {
      append(held.storage.data(), held.nbytes);
    }
  }
}

void TorchSaveFileWriter::append(const void* data, size_t size) {
  try {
    sink_->append(data, size);
  } catch (...) {
    sink_.reset(); // removes the temporary file: what was there stays
    throw;
  }
}

} // namespace torch_ext::detail
