// SafetensorsFile: a file's header read once, its tensors built on demand
// over the mapping.
#include <torch_ext/safetensors.h>

#include <ATen/ATen.h>

#include <cstring>
#include <unordered_map>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/io/crc32.h"
#include "torch_ext/csrc/io/mapped_file.h"
#include "torch_ext/csrc/state/select_keys.h"

#include "dtypes.h"
#include "header.h"
#include "integrity.h"

namespace torch_ext {

using detail::MappedFile;

struct SafetensorsFile::State {
  std::shared_ptr<const MappedFile> file;
  std::vector<SafetensorsTensorInfo> tensors;
  std::unordered_map<std::string, size_t> index;
  SafetensorsMetadata metadata;

  const SafetensorsTensorInfo& find(const std::string& name) const {
    const auto found = index.find(name);
    TORCH_CHECK_VALUE(found != index.end(), "the safetensors file '", file->path(), "' has no tensor '", name, "'");
    return tensors[found->second];
  }

  uint32_t data_crc(const SafetensorsTensorInfo& info) const {
    // One pass over the pages instead of a fault per page.
    file->prefetch(info.offset, info.nbytes);
    return detail::crc32(0, file->data() + info.offset, info.nbytes);
  }

  void check(const SafetensorsTensorInfo& info) const {
    if (!info.crc32) {
      return;
    }
    const uint32_t crc = data_crc(info);
    if (crc != *info.crc32) {
      detail::fail_file(
          file->path(),
          "tensor '" + info.name + "' fails its CRC32 check: the header says " + detail::crc_hex(*info.crc32) +
              ", its data has " + detail::crc_hex(crc));
    }
  }

  at::Tensor tensor(const SafetensorsTensorInfo& info, bool verify) const;
};

namespace {

std::vector<int64_t> torch_shape(const std::string& file, const SafetensorsTensorInfo& info) {
  std::vector<int64_t> shape = info.shape;
  if (info.dtype == detail::kPackedPairDtype) {
    TORCH_CHECK(
        !shape.empty() && shape.back() % 2 == 0,
        "tensor '",
        info.name,
        "' of the safetensors file '",
        file,
        "' is F4 of shape ",
        detail::shape_text(shape),
        ": torch's float4_e2m1fn_x2 holds pairs, so its last dimension must be even");
    shape.back() /= 2;
  }
  return shape;
}

} // namespace

at::Tensor SafetensorsFile::State::tensor(const SafetensorsTensorInfo& info, bool verify) const {
  TORCH_CHECK(
      info.scalar_type.has_value(),
      "tensor '",
      info.name,
      "' of the safetensors file '",
      file->path(),
      "' is ",
      info.dtype,
      ", which torch has no dtype for");
  const std::vector<int64_t> shape = torch_shape(file->path(), info);
  if (verify) {
    check(info);
  }
  const at::TensorOptions options = at::TensorOptions().dtype(*info.scalar_type);
  if (info.nbytes == 0) {
    return at::empty(shape, options);
  }
  auto* data = const_cast<uint8_t*>(file->data() + info.offset);
  if (reinterpret_cast<uintptr_t>(data) % c10::elementSize(*info.scalar_type) != 0) {
    // The safetensors package orders a file's tensors so that each is
    // aligned for its dtype; other writers may not.
    at::Tensor copy = at::empty(shape, options);
    std::memcpy(copy.data_ptr(), data, info.nbytes);
    return copy;
  }
  // The storage keeps the mapping alive.
  c10::Storage storage(
      c10::Storage::use_byte_size_t(),
      info.nbytes,
      c10::DataPtr(
          data,
          new std::shared_ptr<const MappedFile>(file),
          [](void* context) { delete static_cast<std::shared_ptr<const MappedFile>*>(context); },
          c10::Device(c10::kCPU)),
      nullptr,
      false);
  return at::empty({0}, options).set_(std::move(storage), 0, shape);
}

SafetensorsFile::SafetensorsFile(const std::string& file) {
  auto state = std::make_shared<State>();
  state->file = MappedFile::open(file);
  detail::Header header = detail::parse_header(state->file->data(), state->file->size(), file);
  state->tensors.reserve(header.tensors.size());
  for (detail::HeaderTensor& tensor : header.tensors) {
    SafetensorsTensorInfo info;
    info.name = std::move(tensor.name);
    info.dtype = std::string(tensor.dtype->name);
    info.scalar_type = tensor.dtype->scalar_type;
    info.shape = std::move(tensor.shape);
    info.offset = header.data_start + tensor.begin;
    info.nbytes = tensor.end - tensor.begin;
    state->index.emplace(info.name, state->tensors.size());
    state->tensors.push_back(std::move(info));
  }
  for (auto& [key, value] : header.metadata) {
    const std::optional<std::string_view> crc_of = detail::crc_key_tensor(key);
    if (!crc_of) {
      state->metadata.emplace_back(std::move(key), std::move(value));
      continue;
    }
    const auto found = state->index.find(std::string(*crc_of));
    if (found == state->index.end()) {
      detail::fail_file(file, "its __metadata__ has a CRC32 for '" + std::string(*crc_of) + "', which is no tensor of it");
    }
    const std::optional<uint32_t> crc = detail::parse_crc(value);
    if (!crc) {
      detail::fail_file(file, "its __metadata__ entry '" + key + "' is '" + value + "', not a CRC32 of 8 hex digits");
    }
    state->tensors[found->second].crc32 = *crc;
  }
  state_ = std::move(state);
}

const std::string& SafetensorsFile::path() const {
  return state_->file->path();
}

const std::vector<SafetensorsTensorInfo>& SafetensorsFile::tensors() const {
  return state_->tensors;
}

const SafetensorsTensorInfo& SafetensorsFile::info(const std::string& name) const {
  return state_->find(name);
}

const SafetensorsMetadata& SafetensorsFile::metadata() const {
  return state_->metadata;
}

std::vector<std::string> SafetensorsFile::unverifiable() const {
  std::vector<std::string> names;
  for (const SafetensorsTensorInfo& info : state_->tensors) {
    if (!info.crc32) {
      names.push_back(info.name);
    }
  }
  return names;
}

at::Tensor SafetensorsFile::tensor(const std::string& name, bool verify) const {
  return state_->tensor(state_->find(name), verify);
}

c10::impl::GenericDict SafetensorsFile::load(const ReadOptions& options) const {
  c10::impl::GenericDict result(c10::StringType::get(), c10::AnyType::get());
  if (options.keys.empty()) {
    for (const SafetensorsTensorInfo& info : state_->tensors) {
      result.insert(info.name, state_->tensor(info, options.verify));
    }
    return result;
  }
  // The rule of ReadOptions::keys, and its error, over the names alone.
  c10::impl::GenericDict names(c10::StringType::get(), c10::AnyType::get());
  for (const SafetensorsTensorInfo& info : state_->tensors) {
    names.insert(info.name, c10::IValue());
  }
  for (const auto& entry : detail::select_keys(names, options.keys, path()).toGenericDict()) {
    const std::string& name = entry.key().toStringRef();
    result.insert(name, state_->tensor(state_->find(name), options.verify));
  }
  return result;
}

SafetensorsVerification SafetensorsFile::verify() const {
  SafetensorsVerification verification;
  for (const SafetensorsTensorInfo& info : state_->tensors) {
    if (!info.crc32) {
      verification.unverifiable.push_back(info.name);
      continue;
    }
    const uint32_t crc = state_->data_crc(info);
    if (crc == *info.crc32) {
      verification.verified.push_back(info.name);
    } else {
      verification.failed.push_back({info.name, path(), *info.crc32, crc});
    }
  }
  return verification;
}

c10::IValue read_safetensors_file(const std::string& file, const ReadOptions& options) {
  return SafetensorsFile(file).load(options);
}

} // namespace torch_ext
