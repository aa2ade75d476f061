#include "read_checkpoint_path.h"

#include <c10/util/Exception.h>

#include <torch_ext/dcp.h>

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
      break;
  }
  TORCH_CHECK(
      false,
      "cannot load the checkpoint '",
      path,
      "': it is ",
      describe_format(format),
      ", a format torch_ext cannot read yet; it reads torch.save files and DCP checkpoints");
}

} // namespace torch_ext::detail
