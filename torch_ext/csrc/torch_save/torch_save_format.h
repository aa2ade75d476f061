#pragma once

#include <ATen/core/ivalue.h>

#include <memory>
#include <string>

#include "torch_ext/csrc/format/checkpoint_format.h"

namespace torch_ext::detail {

// torch.save's format, as upstream's CheckpointWriter lays it out: each
// rank's part is the file checkpoint_file_path(folder, rank), created with
// its folder.
std::shared_ptr<const CheckpointFormat> torch_save_format();

// The plan of one torch.save file at `file`: the pickle of `state`
// (pickle_state) and its storages, whole, in key order, which the sink
// (CheckpointFileWriter) writes as the records `data/0`, `data/1`, ...
std::unique_ptr<WritePlan> plan_torch_save_file(const std::string& file, const c10::IValue& state);

} // namespace torch_ext::detail
