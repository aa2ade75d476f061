#pragma once

#include <ATen/core/Tensor.h>

#include "torch_ext/csrc/pickle/pickler.h"
#include "torch_ext/csrc/torch_save/archive_writer.h"

namespace torch_ext::detail::dcp {

// An item of a data file is what torch.save writes into a buffer: an archive
// under the folder `archive` with the records data.pkl, .format_version,
// .storage_alignment, byteorder, data/<key> for each storage, and version.
void write_item_archive(const PickledState& pickled, const ArchiveWriter::Sink& sink);

// The pickle of a tensor item: torch.save of the tensor as upstream saves a
// chunk (detached, its storage holding its elements only), with its elements
// contiguous, so that a reader finds the rows of any region in one range.
// The storage may alias `tensor`'s memory: keep `tensor` alive while the
// result is written.
PickledState pickle_tensor_item(const at::Tensor& tensor);

} // namespace torch_ext::detail::dcp
