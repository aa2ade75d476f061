#include "read_checkpoint_path.h"

#include <c10/util/Exception.h>

#include <torch_ext/dcp.h>
#include <torch_ext/safetensors.h>

#include "torch_ext/csrc/torch_save/checkpoint_file_reader.h"

#include "detect_format.h"

namespace torch_ext::detail {

c10::IValue read_checkpoint_path(const std::string& path, const ReadOptions& options) {
  const DiskFormat format = detect_format(path);
  switch (format) {
    case DiskFormat::TorchSave:
      return read_torch_save_file(path, options);
    case DiskFormat::Dcp:
      return read_dcp_checkpoint(path, options);
    case DiskFormat::Safetensors:
      return read_safetensors_file(path, options);
    case DiskFormat::SafetensorsFolder:
      return read_safetensors_folder(path, options);
    case DiskFormat::ManagerRoot:
      break;
  }
  TORCH_CHECK(
      false,
      "cannot load the checkpoint '",
      path,
      "': it is ",
      describe_format(format),
      ", which holds a checkpoint per step: load one with CheckpointManager(root).load(step), or read a rank's file, "
      "<root>/step_<n>/checkpoint_<rank>.pt");
}

} // namespace torch_ext::detail
