// SafetensorsFolderWriter: Hugging Face's sharded layout, shard by shard.
#include <torch_ext/safetensors.h>

#include <filesystem>
#include <unordered_set>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/io/durable_file.h"

#include "file_writer.h"
#include "index.h"

namespace torch_ext {

namespace fs = std::filesystem;

struct SafetensorsFolderWriter::State {
  struct Shard {
    std::string name;
    std::vector<SafetensorsEntry> entries; // in the state dict's order
    size_t tensors = 0;
  };

  std::string folder;
  std::vector<Shard> shards;
  std::vector<std::pair<std::string, std::vector<std::string>>> shard_names;
  std::vector<SafetensorsEntry> order;
  SafetensorsMetadata metadata;
  uint64_t total_size = 0;
  size_t next = 0;
  size_t shard = 0; // the one being written
  size_t written_in_shard = 0;
  std::optional<SafetensorsWriter> writer;

  void start_shard() {
    // User metadata goes into the index when there is one, as huggingface_hub puts it.
    writer.emplace(
        (fs::path(folder) / shards[shard].name).string(),
        shards[shard].entries,
        shards.size() == 1 ? metadata : SafetensorsMetadata{});
  }

  void finish_shard() {
    writer->commit();
    writer.reset();
    ++shard;
    written_in_shard = 0;
  }
};

namespace {

// huggingface_hub's split_state_dict_into_shards_factory: in order, a new
// shard once the next tensor would pass the bound; a tensor larger than it
// gets a shard of its own, placed at once, while the current shard goes on.
std::vector<SafetensorsFolderWriter::State::Shard> split(
    const std::vector<SafetensorsEntry>& entries,
    const std::vector<uint64_t>& bytes,
    uint64_t max_shard_size,
    uint64_t& total_size) {
  using Shard = SafetensorsFolderWriter::State::Shard;
  std::vector<Shard> shards;
  Shard current;
  uint64_t current_size = 0;
  total_size = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    total_size += bytes[i];
    if (bytes[i] > max_shard_size) {
      shards.push_back(Shard{"", {entries[i]}});
      continue;
    }
    if (current_size + bytes[i] > max_shard_size) {
      shards.push_back(std::move(current));
      current = Shard{};
      current_size = 0;
    }
    current.entries.push_back(entries[i]);
    current_size += bytes[i];
  }
  if (!current.entries.empty() || shards.empty()) {
    shards.push_back(std::move(current));
  }
  for (size_t i = 0; i < shards.size(); ++i) {
    shards[i].name = shards.size() == 1 ? kSafetensorsSingleName : detail::shard_name(i, shards.size());
  }
  return shards;
}

void remove_if_present(const std::string& file, const std::string& folder) {
  std::error_code error;
  if (fs::remove(file, error)) {
    detail::fsync_folder(folder, file);
  }
  TORCH_CHECK(!error, "cannot remove '", file, "': ", error.message());
}

} // namespace

SafetensorsFolderWriter::SafetensorsFolderWriter(
    const std::string& folder,
    std::vector<SafetensorsEntry> entries,
    uint64_t max_shard_size,
    SafetensorsMetadata metadata)
    : state_(std::make_unique<State>()) {
  TORCH_CHECK_VALUE(!folder.empty(), "SafetensorsFolderWriter expected a folder, got ''");
  TORCH_CHECK_VALUE(max_shard_size > 0, "max_shard_size must be at least 1 byte, got 0");
  State& state = *state_;
  state.folder = folder;
  // Checks the entries (dtypes, names) and gives each one's bytes.
  std::vector<size_t> order;
  const std::vector<detail::HeaderTensor> layout = detail::safetensors_layout(entries, order);
  std::vector<uint64_t> bytes(entries.size());
  for (size_t i = 0; i < order.size(); ++i) {
    bytes[order[i]] = layout[i].end - layout[i].begin;
  }
  for (const auto& [key, value] : metadata) {
    TORCH_CHECK_VALUE(key != "total_size", "the metadata key 'total_size' is the index's own");
  }
  detail::file_metadata(metadata); // checks it
  state.metadata = std::move(metadata);
  state.shards = split(entries, bytes, max_shard_size, state.total_size);
  for (State::Shard& shard : state.shards) {
    std::vector<size_t> shard_order;
    detail::safetensors_layout(shard.entries, shard_order);
    std::vector<std::string> names;
    for (const size_t i : shard_order) {
      state.order.push_back(shard.entries[i]);
      names.push_back(shard.entries[i].name);
    }
    shard.tensors = shard.entries.size();
    state.shard_names.emplace_back(shard.name, std::move(names));
  }
  std::error_code error;
  fs::create_directories(folder, error);
  TORCH_CHECK(!error, "cannot create the folder '", folder, "': ", error.message());
  // From here until commit() the folder reads as incomplete, never as a mix of two saves.
  remove_if_present((fs::path(folder) / kSafetensorsIndexName).string(), folder);
}

SafetensorsFolderWriter::SafetensorsFolderWriter(SafetensorsFolderWriter&&) noexcept = default;
SafetensorsFolderWriter& SafetensorsFolderWriter::operator=(SafetensorsFolderWriter&&) noexcept = default;
SafetensorsFolderWriter::~SafetensorsFolderWriter() = default;

const std::vector<SafetensorsEntry>& SafetensorsFolderWriter::order() const {
  return state_->order;
}

const std::vector<std::pair<std::string, std::vector<std::string>>>& SafetensorsFolderWriter::shards() const {
  return state_->shard_names;
}

void SafetensorsFolderWriter::write(const at::Tensor& tensor) {
  State& state = *state_;
  detail::check_write("writing the folder '" + state.folder + "'", state.order, state.next);
  if (!state.writer) {
    state.start_shard();
  }
  state.writer->write(tensor);
  ++state.next;
  if (++state.written_in_shard == state.shards[state.shard].tensors) {
    state.finish_shard();
  }
}

void SafetensorsFolderWriter::commit() {
  State& state = *state_;
  detail::check_commit("writing the folder '" + state.folder + "'", state.order, state.next);
  while (state.shard < state.shards.size()) { // a shard of no tensors
    state.start_shard();
    state.finish_shard();
  }
  std::unordered_set<std::string> kept;
  for (const State::Shard& shard : state.shards) {
    kept.insert(shard.name);
  }
  if (state.shards.size() > 1) {
    std::vector<std::pair<std::string, std::string>> weight_map;
    for (const auto& [shard, names] : state.shard_names) {
      for (const std::string& name : names) {
        weight_map.emplace_back(name, shard);
      }
    }
    const std::string text = detail::index_text(state.total_size, state.metadata, weight_map);
    detail::DurableFile index((fs::path(state.folder) / kSafetensorsIndexName).string());
    index.write(text.data(), text.size());
    index.commit();
    kept.insert(kSafetensorsIndexName);
  }
  // The files of an earlier save that this one does not use.
  for (const fs::directory_entry& entry : fs::directory_iterator(state.folder)) {
    const std::string name = entry.path().filename().string();
    if (detail::is_layout_file(name) && kept.count(name) == 0) {
      remove_if_present(entry.path().string(), state.folder);
    }
  }
}

void write_safetensors_folder(
    const std::string& folder,
    const c10::IValue& state_dict,
    uint64_t max_shard_size,
    const SafetensorsMetadata& metadata) {
  detail::write_state_dict(state_dict, [&](std::vector<SafetensorsEntry> entries) {
    return SafetensorsFolderWriter(folder, std::move(entries), max_shard_size, metadata);
  });
}

} // namespace torch_ext
