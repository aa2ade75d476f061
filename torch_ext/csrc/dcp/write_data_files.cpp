// write_data_files: what FileSystemWriter.write_data does on one rank
// (_split_by_size_and_type, then a thread per data file).
#include <torch_ext/dcp.h>

#include <algorithm>
#include <exception>
#include <iterator>
#include <thread>

#include <c10/util/Exception.h>

namespace torch_ext::dcp {
namespace {

constexpr int64_t kMaxThreads = 256;

bool is_tensor(const SaveItem& item) {
  return !item.torch_save_bytes && item.value.isTensor();
}

// _split_by_size_and_type: non-tensor items dealt round-robin, tensors
// largest first to the least full file.
std::vector<std::vector<const SaveItem*>> split_into_files(const std::vector<SaveItem>& items, size_t files) {
  std::vector<std::vector<const SaveItem*>> buckets(files);
  std::vector<const SaveItem*> tensors;
  size_t objects = 0;
  for (const SaveItem& item : items) {
    if (is_tensor(item)) {
      tensors.push_back(&item);
    } else {
      buckets[objects++ % files].push_back(&item);
    }
  }
  std::stable_sort(tensors.begin(), tensors.end(), [](const SaveItem* a, const SaveItem* b) {
    return a->value.toTensor().nbytes() > b->value.toTensor().nbytes();
  });
  std::vector<uint64_t> sizes(files, 0);
  for (const SaveItem* item : tensors) {
    const size_t least = static_cast<size_t>(std::min_element(sizes.begin(), sizes.end()) - sizes.begin());
    buckets[least].push_back(item);
    sizes[least] += item->value.toTensor().nbytes();
  }
  return buckets;
}

std::vector<WriteResult> write_file(
    const std::string& folder,
    const std::string& file_name,
    const std::vector<const SaveItem*>& items,
    const DcpWriteOptions& options) {
  DataFileWriter out(folder, file_name, options.compress, options.sync);
  std::vector<WriteResult> results;
  results.reserve(items.size());
  for (const SaveItem* item : items) {
    if (item->torch_save_bytes) {
      results.push_back(out.write_serialized(item->index, *item->torch_save_bytes));
    } else if (item->value.isTensor()) {
      results.push_back(out.write_tensor(item->index, item->value.toTensor()));
    } else {
      results.push_back(out.write_object(item->index, item->value));
    }
  }
  out.commit();
  return results;
}

} // namespace

void check_write_options(const DcpWriteOptions& options) {
  TORCH_CHECK_VALUE(
      options.thread_count >= 1 && options.thread_count <= kMaxThreads,
      "a DCP save expected a thread_count in [1, ",
      kMaxThreads,
      "], got ",
      options.thread_count);
  TORCH_CHECK_VALUE(
      options.max_chunk_bytes >= 0, "a DCP save expected a max_chunk_bytes of 0 or more, got ", options.max_chunk_bytes);
}

std::vector<WriteResult> write_data_files(
    const std::string& folder,
    int64_t rank,
    const std::vector<SaveItem>& items,
    const DcpWriteOptions& options) {
  check_write_options(options);
  TORCH_CHECK_VALUE(rank >= 0, "a DCP save expected a rank of 0 or more, got ", rank);
  const auto files = split_into_files(items, static_cast<size_t>(options.thread_count));
  std::vector<std::vector<WriteResult>> results(files.size());
  std::vector<std::exception_ptr> errors(files.size());
  const auto write = [&](size_t i) {
    try {
      results[i] = write_file(folder, data_file_name(rank, static_cast<int64_t>(i)), files[i], options);
    } catch (...) {
      errors[i] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  const auto join = [&threads] {
    for (std::thread& thread : threads) {
      thread.join();
    }
  };
  try {
    for (size_t i = 1; i < files.size(); ++i) {
      threads.emplace_back(write, i);
    }
  } catch (...) {
    join();
    throw;
  }
  write(0);
  join();
  for (const std::exception_ptr& error : errors) {
    if (error) {
      std::rethrow_exception(error);
    }
  }
  std::vector<WriteResult> all;
  all.reserve(items.size());
  for (std::vector<WriteResult>& file_results : results) {
    std::move(file_results.begin(), file_results.end(), std::back_inserter(all));
  }
  return all;
}

} // namespace torch_ext::dcp
