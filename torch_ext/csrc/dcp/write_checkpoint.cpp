// write_dcp_checkpoint: what dcp.save with FileSystemWriter does in one
// process (DefaultSavePlanner's flattening and plan, then the writer).
#include <torch_ext/dcp.h>

#include <utility>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/state/state_value.h"

#include "flatten.h"
#include "metadata_entries.h"

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
    detail::dcp::add_entry(metadata, entry.fqn, entry.path, entry.value);
    items.push_back(dcp::SaveItem{detail::dcp::item_index(entry.fqn, entry.value), entry.value, std::nullopt});
  }

  dcp::prepare_folder(path);
  for (WriteResult& result : dcp::write_data_files(path, 0, items, options)) {
    metadata.storage_data.emplace_back(std::move(result.index), std::move(result.location));
  }
  detail::dcp::finish_metadata(metadata, path);
  dcp::commit_metadata(path, metadata, options.sync);
}

} // namespace torch_ext
