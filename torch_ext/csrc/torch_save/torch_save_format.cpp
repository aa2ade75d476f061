#include "torch_save_format.h"

#include <filesystem>
#include <utility>
#include <vector>

#include <c10/util/Exception.h>

#include <torch_ext/checkpoint_file.h>

#include "torch_ext/csrc/pickle/pickler.h"

#include "checkpoint_file_writer.h"

namespace torch_ext::detail {
namespace {

std::vector<StorageSlice> whole(const std::vector<c10::Storage>& storages) {
  std::vector<StorageSlice> slices;
  slices.reserve(storages.size());
  for (const c10::Storage& storage : storages) {
    slices.push_back({storage, 0, storage.nbytes()});
  }
  return slices;
}

class TorchSavePlan final : public WritePlan {
 public:
  // `folder`, unless empty, is created at open().
  TorchSavePlan(std::string file, std::string folder, PickledState pickled)
      : WritePlan(whole(pickled.storages)),
        file_(std::move(file)),
        folder_(std::move(folder)),
        pickle_(std::move(pickled.pickle)) {}

  std::unique_ptr<WriteSink> open() const override {
    if (!folder_.empty()) {
      std::error_code error;
      std::filesystem::create_directories(folder_, error);
      TORCH_CHECK(!error, "cannot create the checkpoint folder '", folder_, "' for '", file_, "': ", error.message());
    }
    std::vector<uint64_t> sizes;
    sizes.reserve(slices().size());
    for (const StorageSlice& slice : slices()) {
      sizes.push_back(slice.size);
    }
    return std::make_unique<CheckpointFileWriter>(file_, pickle_, std::move(sizes));
  }

 private:
  const std::string file_;
  const std::string folder_;
  const std::string pickle_;
};

class TorchSaveFormat final : public CheckpointFormat {
 public:
  std::unique_ptr<WritePlan> plan(const std::string& folder, int64_t rank, const c10::IValue& state) const override {
    TORCH_CHECK_VALUE(!folder.empty(), "write_checkpoint expected a checkpoint folder, got ''");
    return std::make_unique<TorchSavePlan>(checkpoint_file_path(folder, rank), folder, pickle_state(state));
  }
};

} // namespace

std::shared_ptr<const CheckpointFormat> torch_save_format() {
  static const std::shared_ptr<const CheckpointFormat> format = std::make_shared<const TorchSaveFormat>();
  return format;
}

std::unique_ptr<WritePlan> plan_torch_save_file(const std::string& file, const c10::IValue& state) {
  return std::make_unique<TorchSavePlan>(file, "", pickle_state(state));
}

} // namespace torch_ext::detail
