#include "metadata_entries.h"

#include <cstdint>
#include <cstdio>
#include <random>
#include <utility>

#include <c10/util/Exception.h>

namespace torch_ext::detail::dcp {
namespace {

namespace public_dcp = torch_ext::dcp;

// A random (version 4) UUID, as uuid.uuid4() gives upstream's save_id.
std::string random_uuid() {
  std::random_device device;
  std::mt19937_64 generator((static_cast<uint64_t>(device()) << 32) ^ device());
  uint64_t high = generator();
  uint64_t low = generator();
  high = (high & ~uint64_t{0xF000}) | 0x4000;
  low = (low & ~(uint64_t{0xC} << 60)) | (uint64_t{0x8} << 60);
  char text[37];
  std::snprintf(
      text,
      sizeof(text),
      "%08x-%04x-%04x-%04x-%012llx",
      static_cast<unsigned>(high >> 32),
      static_cast<unsigned>((high >> 16) & 0xFFFF),
      static_cast<unsigned>(high & 0xFFFF),
      static_cast<unsigned>(low >> 48),
      static_cast<unsigned long long>(low & 0xFFFFFFFFFFFFull));
  return text;
}

} // namespace

ItemIndex item_index(const std::string& fqn, const c10::IValue& value) {
  if (!value.isTensor()) {
    return ItemIndex{fqn, std::nullopt, std::nullopt};
  }
  return ItemIndex{fqn, std::vector<int64_t>(static_cast<size_t>(value.toTensor().dim()), 0), 0};
}

void add_entry(Metadata& metadata, const std::string& fqn, const ObjectPath& path, const c10::IValue& value) {
  TORCH_INTERNAL_ASSERT(metadata.planner_data.has_value());
  if (value.isTensor()) {
    const at::Tensor& tensor = value.toTensor();
    public_dcp::TensorEntry entry;
    entry.dtype = tensor.scalar_type();
    entry.size = tensor.sizes().vec();
    entry.chunks.push_back(public_dcp::Chunk{std::vector<int64_t>(entry.size.size(), 0), entry.size});
    metadata.state_dict_metadata.emplace_back(fqn, std::move(entry));
  } else {
    metadata.state_dict_metadata.emplace_back(fqn, public_dcp::BytesEntry{});
  }
  metadata.planner_data->emplace_back(fqn, path);
}

void finish_metadata(Metadata& metadata, const std::string& path) {
  metadata.storage_meta = public_dcp::StorageMeta{path, random_uuid(), std::nullopt, {}};
  metadata.version = std::string(public_dcp::kVersion);
}

} // namespace torch_ext::detail::dcp
