#pragma once

#include <ATen/core/ivalue.h>

#include <string>

#include <torch_ext/dcp.h>

namespace torch_ext::detail::dcp {

using torch_ext::dcp::ItemIndex;
using torch_ext::dcp::Metadata;
using torch_ext::dcp::ObjectPath;

// What `.metadata` records of the leaves a save writes, stated once for
// write_dcp_checkpoint and DcpWriter.

// The item of the leaf `fqn`: a tensor whole, as one chunk at offset 0, or
// a non-tensor value.
ItemIndex item_index(const std::string& fqn, const c10::IValue& value);

// Adds the leaf's entry (a tensor as one chunk) and its planner_data path,
// to a metadata whose planner_data is set (empty for a save of nothing).
void add_entry(Metadata& metadata, const std::string& fqn, const ObjectPath& path, const c10::IValue& value);

// What a save into the folder `path` records besides its entries and items:
// storage_meta with a fresh save_id (a random UUID, as uuid.uuid4() gives
// upstream's), and the version.
void finish_metadata(Metadata& metadata, const std::string& path);

} // namespace torch_ext::detail::dcp
