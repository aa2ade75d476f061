#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <vector>

#include <torch_ext/dcp.h>

namespace torch_ext::python {

// Upstream's DCP metadata objects (torch.distributed.checkpoint.metadata's
// dataclasses and filesystem._StorageInfo) to and from the C++ layer's
// structs, field by field. What the structs cannot hold (a planner_data that
// is no dict of str and int paths, a layout other than strided) is a
// TypeError naming the entry. Need the GIL.
torch_ext::dcp::Metadata metadata_from_python(pybind11::handle metadata);
pybind11::object metadata_to_python(const torch_ext::dcp::Metadata& metadata);

// MetadataIndex.
torch_ext::dcp::ItemIndex item_index_from_python(pybind11::handle index);
pybind11::object item_index_to_python(const torch_ext::dcp::ItemIndex& index);

// _StorageInfo.
pybind11::object location_to_python(const torch_ext::dcp::ItemLocation& location);

// A sequence of ints (a torch.Size: offsets, sizes, lengths).
std::vector<int64_t> ints_from_python(pybind11::handle sequence);

} // namespace torch_ext::python
