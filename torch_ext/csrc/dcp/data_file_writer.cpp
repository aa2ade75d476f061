#include <torch_ext/dcp.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <utility>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/io/durable_file.h"

#include "item_archive.h"
#include "zstd_stream.h"

namespace torch_ext::dcp {
namespace {

// Records' headers and small items are gathered into writes of this size
// rather than a system call each; larger pieces go straight through.
constexpr size_t kBufferBytes = size_t{1} << 16;

} // namespace

class DataFileWriter::Impl {
 public:
  using Sink = detail::ArchiveWriter::Sink;

  Impl(const std::string& folder, std::string relative_path, bool compress, bool sync)
      : relative_path_(std::move(relative_path)),
        compress_(compress),
        out_((std::filesystem::path(folder) / relative_path_).string(), sync) {
    buffer_.reserve(kBufferBytes);
  }

  // The item that `content` streams into the sink it is given.
  WriteResult write(ItemIndex index, const std::function<void(const Sink&)>& content) {
    ItemLocation location;
    location.relative_path = relative_path_;
    location.offset = position();
    if (compress_) {
      detail::dcp::ZstdWriter zstd([this](const void* data, size_t size) { emit(data, size); });
      content([&zstd](const void* data, size_t size) { zstd.write(data, size); });
      zstd.finish();
      location.transform_descriptors = {std::string(kZstdDescriptor)};
    } else {
      content([this](const void* data, size_t size) { emit(data, size); });
    }
    location.length = position() - location.offset;
    return WriteResult{std::move(index), std::move(location)};
  }

  void commit() {
    flush();
    out_.commit();
  }

 private:
  uint64_t position() const {
    return out_.position() + buffer_.size();
  }

  void emit(const void* data, size_t size) {
    if (buffer_.size() + size > kBufferBytes) {
      flush();
    }
    if (size >= kBufferBytes) {
      out_.write(data, size);
      return;
    }
    const auto* bytes = static_cast<const char*>(data);
    buffer_.insert(buffer_.end(), bytes, bytes + size);
  }

  void flush() {
    if (!buffer_.empty()) {
      out_.write(buffer_.data(), buffer_.size());
      buffer_.clear();
    }
  }

  const std::string relative_path_;
  const bool compress_;
  detail::DurableFile out_;
  std::vector<char> buffer_;
};

DataFileWriter::DataFileWriter(const std::string& folder, std::string relative_path, bool compress, bool sync)
    : impl_(std::make_unique<Impl>(folder, std::move(relative_path), compress, sync)) {}

DataFileWriter::~DataFileWriter() = default;

WriteResult DataFileWriter::write_tensor(ItemIndex index, const at::Tensor& tensor) {
  TORCH_CHECK_TYPE(
      tensor.defined() && tensor.device().is_cpu(),
      "DCP item '",
      index.fqn,
      "' is not a tensor on the CPU; data files are written from CPU tensors");
  const detail::PickledState pickled = detail::dcp::pickle_tensor_item(tensor);
  return impl_->write(std::move(index), [&](const auto& sink) { detail::dcp::write_item_archive(pickled, sink); });
}

WriteResult DataFileWriter::write_object(ItemIndex index, const c10::IValue& value) {
  const detail::PickledState pickled = detail::pickle_state(value);
  return impl_->write(std::move(index), [&](const auto& sink) { detail::dcp::write_item_archive(pickled, sink); });
}

WriteResult DataFileWriter::write_serialized(ItemIndex index, std::string_view torch_save_bytes) {
  return impl_->write(
      std::move(index), [&](const auto& sink) { sink(torch_save_bytes.data(), torch_save_bytes.size()); });
}

void DataFileWriter::commit() {
  impl_->commit();
}

std::string data_file_name(int64_t rank, int64_t index) {
  return "__" + std::to_string(rank) + "_" + std::to_string(index) + ".distcp";
}

} // namespace torch_ext::dcp
