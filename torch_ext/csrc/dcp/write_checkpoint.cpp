// write_dcp_checkpoint: what dcp.save with FileSystemWriter does in one
// process (DefaultSavePlanner's flattening and plan, then the writer).
#include <torch_ext/dcp.h>

#include <cstdio>
#include <random>
#include <utility>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/state/state_value.h"

#include "flatten.h"

namespace torch_ext {
namespace {

using dcp::ItemIndex;
using dcp::WriteResult;
using detail::dcp::FlatEntry;

// Refuses what a checkpoint cannot hold, naming the entry, before any file
// is touched.
struct CheckValues : detail::TensorVisitor {
  void tensor(const at::Tensor& tensor) {
    TORCH_CHECK_TYPE(
        tensor.device().is_cpu(),
        "state_dict ",
        path.describe(),
        " is a tensor on ",
        tensor.device(),
        "; write_dcp_checkpoint writes CPU tensors");
  }
  detail::KeyPath path;
};

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

ItemIndex item_index(const FlatEntry& entry) {
  if (!entry.value.isTensor()) {
    return ItemIndex{entry.fqn, std::nullopt, std::nullopt};
  }
  return ItemIndex{entry.fqn, std::vector<int64_t>(static_cast<size_t>(entry.value.toTensor().dim()), 0), 0};
}

} // namespace

void write_dcp_checkpoint(const std::string& path, const c10::IValue& state_dict, const DcpWriteOptions& options) {
  dcp::check_write_options(options);
  CheckValues check;
  detail::visit_state(state_dict, check, check.path);
  const std::vector<FlatEntry> entries = detail::dcp::flatten_state_dict(state_dict);

  dcp::Metadata metadata;
  metadata.planner_data.emplace();
  std::vector<dcp::SaveItem> items;
  items.reserve(entries.size());
  for (const FlatEntry& entry : entries) {
    if (entry.value.isTensor()) {
      const at::Tensor& tensor = entry.value.toTensor();
      dcp::TensorEntry tensor_entry;
      tensor_entry.dtype = tensor.scalar_type();
      tensor_entry.size = tensor.sizes().vec();
      tensor_entry.chunks.push_back(
          dcp::Chunk{std::vector<int64_t>(tensor_entry.size.size(), 0), tensor_entry.size});
      metadata.state_dict_metadata.emplace_back(entry.fqn, std::move(tensor_entry));
    } else {
      metadata.state_dict_metadata.emplace_back(entry.fqn, dcp::BytesEntry{});
    }
    metadata.planner_data->emplace_back(entry.fqn, entry.path);
    items.push_back(dcp::SaveItem{item_index(entry), entry.value, std::nullopt});
  }

  dcp::prepare_folder(path);
  for (WriteResult& result : dcp::write_data_files(path, 0, items, options)) {
    metadata.storage_data.emplace_back(std::move(result.index), std::move(result.location));
  }
  metadata.storage_meta = dcp::StorageMeta{path, random_uuid(), std::nullopt, {}};
  metadata.version = std::string(dcp::kVersion);
  dcp::commit_metadata(path, metadata, options.sync);
}

} // namespace torch_ext
