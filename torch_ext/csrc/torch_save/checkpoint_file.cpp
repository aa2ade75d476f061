#include <torch_ext/checkpoint_file.h>

#include <filesystem>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/format/read_checkpoint_path.h"
#include "torch_ext/csrc/format/write_plan.h"

#include "torch_save_format.h"

namespace torch_ext {

void write_checkpoint_file(const std::string& file, const c10::IValue& state_dict) {
  TORCH_CHECK_VALUE(!file.empty(), "write_checkpoint_file expected a file name, got ''");
  // Unsupported values fail in the plan, before any file is created.
  detail::write_plan_in_place(*detail::plan_torch_save_file(file, state_dict));
}

c10::IValue read_checkpoint_file(const std::string& file, const ReadOptions& options) {
  return detail::read_checkpoint_path(file, options);
}

std::string checkpoint_file_path(const std::string& path, int64_t rank) {
  return (std::filesystem::path(path) / ("checkpoint_" + std::to_string(rank) + ".pt")).string();
}

void write_checkpoint(const std::string& path, int64_t rank, const c10::IValue& state_dict) {
  detail::write_plan_in_place(*detail::torch_save_format()->plan(path, rank, state_dict));
}

c10::IValue read_checkpoint(const std::string& path, int64_t rank, const ReadOptions& options) {
  return read_checkpoint_file(checkpoint_file_path(path, rank), options);
}

} // namespace torch_ext
