// write_dcp_checkpoint: what dcp.save with FileSystemWriter does in one
// process (DefaultSavePlanner's flattening and plan, then the writer).
#include <torch_ext/dcp.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <random>
#include <thread>
#include <utility>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/state/state_value.h"

#include "flatten.h"

namespace torch_ext {
namespace {

using dcp::ItemIndex;
using dcp::WriteResult;
using detail::dcp::FlatEntry;

constexpr int64_t kMaxThreads = 256;

// Refuses what a checkpoint cannot hold, naming the entry, before any file
// is touched.
struct CheckValues : detail::TensorVisitor {
  void tensor(const at::Tensor& tensor) {
    TORCH_CHECK_TYPE(
        tensor.device().is_cpu(),
        "state_dict ",
        path.describe(),
        " is a tensor on ",
        tensor.device(),
        "; write_dcp_checkpoint writes CPU tensors");
  }
  detail::KeyPath path;
};

// A random (version 4) UUID, as uuid.uuid4() gives upstream's save_id.
std::string random_uuid() {
  std::random_device device;
  std::mt19937_64 generator((static_cast<uint64_t>(device()) << 32) ^ device());
  uint64_t high = generator();
  uint64_t low = generator();
  high = (high & ~uint64_t{0xF000}) | 0x4000;
  low = (low & ~(uint64_t{0xC} << 60)) | (uint64_t{0x8} << 60);
  char text[37];
  std::snprintf(
      text,
      sizeof(text),
      "%08x-%04x-%04x-%04x-%012llx",
      static_cast<unsigned>(high >> 32),
      static_cast<unsigned>((high >> 16) & 0xFFFF),
      static_cast<unsigned>(high & 0xFFFF),
      static_cast<unsigned>(low >> 48),
      static_cast<unsigned long long>(low & 0xFFFFFFFFFFFFull));
  return text;
}

// _split_by_size_and_type: non-tensor items dealt round-robin, tensors
// largest first to the least full file.
std::vector<std::vector<const FlatEntry*>> split_into_files(const std::vector<FlatEntry>& entries, size_t files) {
  std::vector<std::vector<const FlatEntry*>> buckets(files);
  std::vector<const FlatEntry*> tensors;
  size_t objects = 0;
  for (const FlatEntry& entry : entries) {
    if (entry.value.isTensor()) {
      tensors.push_back(&entry);
    } else {
      buckets[objects++ % files].push_back(&entry);
    }
  }
  std::stable_sort(tensors.begin(), tensors.end(), [](const FlatEntry* a, const FlatEntry* b) {
    return a->value.toTensor().nbytes() > b->value.toTensor().nbytes();
  });
  std::vector<uint64_t> sizes(files, 0);
  for (const FlatEntry* entry : tensors) {
    const size_t least = static_cast<size_t>(std::min_element(sizes.begin(), sizes.end()) - sizes.begin());
    buckets[least].push_back(entry);
    sizes[least] += entry->value.toTensor().nbytes();
  }
  return buckets;
}

ItemIndex item_index(const FlatEntry& entry) {
  if (!entry.value.isTensor()) {
    return ItemIndex{entry.fqn, std::nullopt, std::nullopt};
  }
  return ItemIndex{entry.fqn, std::vector<int64_t>(static_cast<size_t>(entry.value.toTensor().dim()), 0), 0};
}

std::vector<WriteResult> write_file(
    const std::string& path,
    const std::string& file_name,
    const std::vector<const FlatEntry*>& entries,
    bool compress) {
  dcp::DataFileWriter out(path, file_name, compress);
  std::vector<WriteResult> results;
  results.reserve(entries.size());
  for (const FlatEntry* entry : entries) {
    results.push_back(
        entry->value.isTensor() ? out.write_tensor(item_index(*entry), entry->value.toTensor())
                                : out.write_object(item_index(*entry), entry->value));
  }
  out.commit();
  return results;
}

} // namespace

void write_dcp_checkpoint(const std::string& path, const c10::IValue& state_dict, const DcpWriteOptions& options) {
  TORCH_CHECK_VALUE(
      options.thread_count >= 1 && options.thread_count <= kMaxThreads,
      "write_dcp_checkpoint expected a thread_count in [1, ",
      kMaxThreads,
      "], got ",
      options.thread_count);
  CheckValues check;
  detail::visit_state(state_dict, check, check.path);
  const std::vector<FlatEntry> entries = detail::dcp::flatten_state_dict(state_dict);

  dcp::Metadata metadata;
  metadata.planner_data.emplace();
  for (const FlatEntry& entry : entries) {
    if (entry.value.isTensor()) {
      const at::Tensor& tensor = entry.value.toTensor();
      dcp::TensorEntry tensor_entry;
      tensor_entry.dtype = tensor.scalar_type();
      tensor_entry.size = tensor.sizes().vec();
      tensor_entry.chunks.push_back(
          dcp::Chunk{std::vector<int64_t>(tensor_entry.size.size(), 0), tensor_entry.size});
      metadata.state_dict_metadata.emplace_back(entry.fqn, std::move(tensor_entry));
    } else {
      metadata.state_dict_metadata.emplace_back(entry.fqn, dcp::BytesEntry{});
    }
    metadata.planner_data->emplace_back(entry.fqn, entry.path);
  }

  dcp::prepare_folder(path);
  const auto files = split_into_files(entries, static_cast<size_t>(options.thread_count));
  std::vector<std::vector<WriteResult>> results(files.size());
  std::vector<std::exception_ptr> errors(files.size());
  const auto write = [&](size_t i) {
    try {
      results[i] = write_file(path, dcp::data_file_name(0, static_cast<int64_t>(i)), files[i], options.compress);
    } catch (...) {
      errors[i] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  for (size_t i = 1; i < files.size(); ++i) {
    threads.emplace_back(write, i);
  }
  write(0);
  for (std::thread& thread : threads) {
    thread.join();
  }
  for (const std::exception_ptr& error : errors) {
    if (error) {
      std::rethrow_exception(error);
    }
  }

  for (std::vector<WriteResult>& file_results : results) {
    for (WriteResult& result : file_results) {
      metadata.storage_data.emplace_back(std::move(result.index), std::move(result.location));
    }
  }
  metadata.storage_meta = dcp::StorageMeta{path, random_uuid(), std::nullopt, {}};
  metadata.version = std::string(dcp::kVersion);
  dcp::commit_metadata(path, metadata);
}

} // namespace torch_ext
