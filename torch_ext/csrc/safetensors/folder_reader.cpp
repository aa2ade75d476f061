// SafetensorsFolder: Hugging Face's sharded layout, its index checked
// against its shards.
#include <torch_ext/safetensors.h>

#include <filesystem>
#include <set>
#include <unordered_map>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/format/detect_format.h"
#include "torch_ext/csrc/state/select_keys.h"

#include "index.h"

namespace torch_ext {

namespace fs = std::filesystem;

struct SafetensorsFolder::State {
  std::string path;
  std::vector<SafetensorsFile> shards;
  std::unordered_map<std::string, size_t> shard_of; // tensor -> its shard
  std::vector<std::pair<std::string, std::string>> index_metadata;
  std::optional<uint64_t> total_size;

  const SafetensorsFile& find(const std::string& name) const {
    const auto found = shard_of.find(name);
    TORCH_CHECK_VALUE(found != shard_of.end(), "the safetensors folder '", path, "' has no tensor '", name, "'");
    return shards[found->second];
  }
};

namespace {

[[noreturn]] void fail_index(const std::string& file, const std::string& what) {
  TORCH_CHECK(false, "the safetensors index '", file, "' does not match its shards: ", what);
}

void read_sharded(SafetensorsFolder::State& state, const std::string& index_file) {
  detail::Index index = detail::read_index(index_file);
  std::set<std::string> names;
  for (const auto& [tensor, shard] : index.weight_map) {
    names.insert(shard);
  }
  std::unordered_map<std::string, size_t> shard_index;
  for (const std::string& name : names) {
    const std::string file = (fs::path(state.path) / name).string();
    if (!fs::is_regular_file(file)) {
      fail_index(index_file, "it names the shard '" + name + "', which its folder does not hold");
    }
    shard_index.emplace(name, state.shards.size());
    state.shards.emplace_back(file);
  }
  std::unordered_map<std::string, const std::string*> indexed;
  for (const auto& [tensor, shard] : index.weight_map) {
    indexed.emplace(tensor, &shard);
  }
  size_t tensors = 0;
  for (size_t i = 0; i < state.shards.size(); ++i) {
    const SafetensorsFile& shard = state.shards[i];
    const std::string name = fs::path(shard.path()).filename().string();
    for (const SafetensorsTensorInfo& info : shard.tensors()) {
      const auto found = indexed.find(info.name);
      if (found == indexed.end() || *found->second != name) {
        fail_index(index_file, "the shard '" + name + "' holds tensor '" + info.name + "', which its weight_map " +
                       (found == indexed.end() ? "lacks" : "puts in '" + *found->second + "'"));
      }
      state.shard_of.emplace(info.name, i);
    }
    tensors += shard.tensors().size();
  }
  for (const auto& [tensor, shard] : index.weight_map) {
    if (state.shard_of.count(tensor) == 0) {
      fail_index(index_file, "its weight_map puts tensor '" + tensor + "' in '" + shard + "', which does not hold it");
    }
  }
  TORCH_INTERNAL_ASSERT(tensors == index.weight_map.size());
  state.index_metadata = std::move(index.metadata);
  state.total_size = index.total_size;
}

} // namespace

SafetensorsFolder::SafetensorsFolder(const std::string& folder) {
  auto state = std::make_shared<State>();
  state->path = folder;
  const std::string single_file = (fs::path(folder) / kSafetensorsSingleName).string();
  if (const std::optional<std::string> index_file = detail::safetensors_index(folder)) {
    read_sharded(*state, *index_file);
  } else {
    TORCH_CHECK(
        fs::is_regular_file(single_file),
        "the folder '",
        folder,
        "' holds neither ",
        kSafetensorsIndexName,
        " nor ",
        kSafetensorsSingleName,
        ": it is no safetensors checkpoint in Hugging Face's layout, or its save was cut short");
    state->shards.emplace_back(single_file);
    for (const SafetensorsTensorInfo& info : state->shards[0].tensors()) {
      state->shard_of.emplace(info.name, 0);
    }
  }
  state_ = std::move(state);
}

const std::string& SafetensorsFolder::path() const {
  return state_->path;
}

const std::vector<SafetensorsFile>& SafetensorsFolder::shards() const {
  return state_->shards;
}

std::vector<SafetensorsTensorInfo> SafetensorsFolder::tensors() const {
  std::vector<SafetensorsTensorInfo> infos;
  for (const SafetensorsFile& shard : state_->shards) {
    infos.insert(infos.end(), shard.tensors().begin(), shard.tensors().end());
  }
  return infos;
}

const SafetensorsFile& SafetensorsFolder::shard_of(const std::string& name) const {
  return state_->find(name);
}

const std::vector<std::pair<std::string, std::string>>& SafetensorsFolder::index_metadata() const {
  return state_->index_metadata;
}

std::optional<uint64_t> SafetensorsFolder::total_size() const {
  return state_->total_size;
}

at::Tensor SafetensorsFolder::tensor(const std::string& name, bool verify) const {
  return state_->find(name).tensor(name, verify);
}

c10::impl::GenericDict SafetensorsFolder::load(const ReadOptions& options) const {
  c10::impl::GenericDict result(c10::StringType::get(), c10::AnyType::get());
  if (options.keys.empty()) {
    for (const SafetensorsFile& shard : state_->shards) {
      for (const auto& entry : shard.load({options.verify, {}})) {
        result.insert(entry.key(), entry.value());
      }
    }
    return result;
  }
  c10::impl::GenericDict names(c10::StringType::get(), c10::AnyType::get());
  for (const SafetensorsFile& shard : state_->shards) {
    for (const SafetensorsTensorInfo& info : shard.tensors()) {
      names.insert(info.name, c10::IValue());
    }
  }
  for (const auto& entry : detail::select_keys(names, options.keys, state_->path).toGenericDict()) {
    const std::string& name = entry.key().toStringRef();
    result.insert(name, state_->find(name).tensor(name, options.verify));
  }
  return result;
}

SafetensorsVerification SafetensorsFolder::verify() const {
  SafetensorsVerification verification;
  for (const SafetensorsFile& shard : state_->shards) {
    SafetensorsVerification part = shard.verify();
    verification.verified.insert(verification.verified.end(), part.verified.begin(), part.verified.end());
    verification.unverifiable.insert(
        verification.unverifiable.end(), part.unverifiable.begin(), part.unverifiable.end());
    verification.failed.insert(verification.failed.end(), part.failed.begin(), part.failed.end());
  }
  return verification;
}

c10::IValue read_safetensors_folder(const std::string& folder, const ReadOptions& options) {
  return SafetensorsFolder(folder).load(options);
}

} // namespace torch_ext
