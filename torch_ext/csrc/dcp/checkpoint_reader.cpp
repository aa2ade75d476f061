#include <torch_ext/dcp.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>
#include <utility>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

#include "item_reader.h"
#include "metadata_check.h"

namespace torch_ext::dcp {
namespace {

using detail::dcp::ItemReader;

// A non-tensor item's content may decompress to at most this much (tensor
// items: their chunk's bytes and the archive around them).
constexpr uint64_t kMaxObjectBytes = uint64_t{1} << 30;
constexpr uint64_t kArchiveOverhead = uint64_t{1} << 20;
// read_regions_into's threads at most (and one per hardware thread).
constexpr size_t kMaxReadThreads = 8;

std::string offsets_text(const std::optional<std::vector<int64_t>>& offsets) {
  if (!offsets) {
    return "";
  }
  std::string text = " at offsets (";
  for (size_t i = 0; i < offsets->size(); ++i) {
    text += (i == 0 ? "" : ", ") + std::to_string((*offsets)[i]);
  }
  return text + ")";
}

// The bytes from the first to the last element of `tensor` (a view).
uint64_t span_bytes(const at::Tensor& tensor) {
  if (tensor.numel() == 0) {
    return 0;
  }
  int64_t extent = 1;
  for (int64_t d = 0; d < tensor.dim(); ++d) {
    extent += (tensor.size(d) - 1) * tensor.stride(d);
  }
  return static_cast<uint64_t>(extent) * tensor.element_size();
}

} // namespace

class CheckpointReader::Impl {
 public:
  Impl(std::string folder, bool verify) : folder_(std::move(folder)), verify_(verify), metadata_(read_metadata(folder_)) {
    for (size_t i = 0; i < metadata_.state_dict_metadata.size(); ++i) {
      entries_.emplace(metadata_.state_dict_metadata[i].first, i);
    }
    for (size_t i = 0; i < metadata_.storage_data.size(); ++i) {
      const ItemIndex& index = metadata_.storage_data[i].first;
      items_.emplace(std::make_pair(index.fqn, index.offset), i);
    }
    cache_ = std::make_unique<Cached[]>(metadata_.storage_data.size());
  }

  const std::string& folder() const {
    return folder_;
  }
  const Metadata& metadata() const {
    return metadata_;
  }

  size_t item(const ItemIndex& index) const {
    const auto found = items_.find(std::make_pair(index.fqn, index.offset));
    TORCH_CHECK_INDEX(
        found != items_.end(),
        "the DCP checkpoint '",
        folder_,
        "' has no item '",
        index.fqn,
        "'",
        offsets_text(index.offset));
    return found->second;
  }

  // The entry of an item, which read_metadata checked exists.
  const Entry& entry_of(size_t item) const {
    return metadata_.state_dict_metadata[entries_.at(metadata_.storage_data[item].first.fqn)].second;
  }

  // The item opened (once) and, with `verify`, its records checked (once).
  std::shared_ptr<const ItemReader> open(size_t item) const {
    Cached& cached = cache_[item];
    std::shared_ptr<const ItemReader> reader;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      reader = cached.reader;
    }
    if (reader == nullptr) {
      reader = make_reader(item);
      if (!reader->compressed()) {
        // Compressed items are decompressed again on each read rather than
        // held in memory.
        std::lock_guard<std::mutex> lock(mutex_);
        if (cached.reader == nullptr) {
          cached.reader = reader;
        }
        reader = cached.reader;
      }
    }
    if (verify_) {
      if (reader->compressed()) {
        reader->verify();
      } else {
        std::call_once(cached.verified, [&] {
          reader->verify();
          count_read(metadata_.storage_data[item].second.length);
        });
      }
    }
    return reader;
  }

  at::Tensor tensor(size_t item) const {
    const auto* entry = std::get_if<TensorEntry>(&entry_of(item));
    const ItemIndex& index = metadata_.storage_data[item].first;
    const auto reader = open(item);
    TORCH_CHECK(entry != nullptr, reader->what(), " is not a tensor: its entry is a BytesStorageMetadata");
    const c10::IValue value = reader->value();
    const std::vector<int64_t>& sizes = chunk_of(*entry, index).sizes;
    TORCH_CHECK(
        value.isTensor() && value.toTensor().scalar_type() == entry->dtype && value.toTensor().sizes() == sizes,
        reader->what(),
        " holds ",
        value.isTensor() ? "a tensor of another dtype or shape" : std::string("a ") + value.tagKind(),
        "; the metadata says a ",
        entry->dtype,
        " chunk of sizes ",
        c10::IntArrayRef(sizes));
    return value.toTensor();
  }

  c10::IValue object(size_t item) const {
    const auto reader = open(item);
    TORCH_CHECK(
        std::holds_alternative<BytesEntry>(entry_of(item)),
        reader->what(),
        " is a tensor chunk: read it with read_tensor");
    return reader->value();
  }

  std::string serialized(size_t item) const {
    return open(item)->serialized();
  }

  void count_read(uint64_t bytes) const {
    bytes_read_ += bytes;
  }
  uint64_t bytes_read() const {
    return bytes_read_;
  }
  bool verifies() const {
    return verify_;
  }
  bool compressed(size_t item) const {
    return !metadata_.storage_data[item].second.transform_descriptors.empty();
  }

  const Chunk& chunk_of(const TensorEntry& entry, const ItemIndex& index) const {
    for (const Chunk& chunk : entry.chunks) {
      if (index.offset && chunk.offsets == *index.offset) {
        return chunk;
      }
    }
    TORCH_CHECK(false, "the DCP checkpoint '", folder_, "' has no chunk of '", index.fqn, "'", offsets_text(index.offset));
  }

 private:
  struct Cached {
    std::shared_ptr<const ItemReader> reader;
    std::once_flag verified;
  };

  std::shared_ptr<const ItemReader> make_reader(size_t item) const {
    const auto& [index, location] = metadata_.storage_data[item];
    const std::string what = "the item '" + index.fqn + "'" + offsets_text(index.offset) + " of the DCP checkpoint '" +
        folder_ + "' (in '" + location.relative_path + "', bytes " + std::to_string(location.offset) + " to " +
        std::to_string(location.offset + location.length) + ")";
    uint64_t limit = kMaxObjectBytes;
    if (const auto* entry = std::get_if<TensorEntry>(&entry_of(item))) {
      limit = detail::dcp::chunk_bytes(*entry, chunk_of(*entry, index)) + kArchiveOverhead;
    }
    auto reader = std::make_shared<const ItemReader>(file(location.relative_path), location, what, limit);
    if (reader->compressed()) {
      count_read(location.length); // decompressed whole
    }
    return reader;
  }

  std::shared_ptr<const detail::MappedFile> file(const std::string& relative_path) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::shared_ptr<const detail::MappedFile>& mapped = files_[relative_path];
    if (mapped == nullptr) {
      mapped = detail::MappedFile::open((std::filesystem::path(folder_) / relative_path).string());
    }
    return mapped;
  }

  const std::string folder_;
  const bool verify_;
  mutable std::atomic<uint64_t> bytes_read_{0};
  const Metadata metadata_;
  std::unordered_map<std::string, size_t> entries_;
  std::map<std::pair<std::string, std::optional<std::vector<int64_t>>>, size_t> items_;
  mutable std::mutex mutex_;
  std::unique_ptr<Cached[]> cache_; // per item of storage_data
  mutable std::unordered_map<std::string, std::shared_ptr<const detail::MappedFile>> files_;
};

CheckpointReader::CheckpointReader(const std::string& folder, bool verify)
    : impl_(std::make_unique<Impl>(folder, verify)) {}

CheckpointReader::~CheckpointReader() = default;

const std::string& CheckpointReader::folder() const {
  return impl_->folder();
}

const Metadata& CheckpointReader::metadata() const {
  return impl_->metadata();
}

const ItemLocation& CheckpointReader::location(const ItemIndex& index) const {
  return impl_->metadata().storage_data[impl_->item(index)].second;
}

at::Tensor CheckpointReader::read_tensor(const ItemIndex& index) const {
  const size_t item = impl_->item(index);
  at::Tensor tensor = impl_->tensor(item);
  if (!impl_->compressed(item) && !impl_->verifies()) {
    impl_->count_read(tensor.nbytes());
  }
  return tensor;
}

void CheckpointReader::read_region_into(
    const ItemIndex& index,
    const std::vector<int64_t>& storage_offsets,
    const std::vector<int64_t>& lengths,
    at::Tensor& destination) const {
  const size_t item = impl_->item(index);
  at::Tensor source = impl_->tensor(item);
  TORCH_CHECK_VALUE(
      storage_offsets.size() == static_cast<size_t>(source.dim()) && lengths.size() == storage_offsets.size(),
      "read_region_into of '",
      index.fqn,
      "' expected offsets and lengths of ",
      source.dim(),
      " dims, got ",
      storage_offsets.size(),
      " and ",
      lengths.size());
  for (size_t d = 0; d < lengths.size(); ++d) {
    TORCH_CHECK_VALUE(
        storage_offsets[d] >= 0 && lengths[d] >= 0 && storage_offsets[d] <= source.size(d) &&
            lengths[d] <= source.size(d) - storage_offsets[d],
        "read_region_into of '",
        index.fqn,
        "': the region (offsets ",
        c10::IntArrayRef(storage_offsets),
        ", lengths ",
        c10::IntArrayRef(lengths),
        ") lies outside its saved chunk of sizes ",
        source.sizes());
    source = source.narrow(static_cast<int64_t>(d), storage_offsets[d], lengths[d]);
  }
  TORCH_CHECK_VALUE(
      destination.sizes() == source.sizes(),
      "read_region_into of '",
      index.fqn,
      "' expected a destination of sizes ",
      source.sizes(),
      ", got ",
      destination.sizes());
  // A load writes parameters (leaves that require grad) in place.
  const c10::NoGradGuard no_grad;
  // Touches only the pages between the region's first and last element.
  destination.copy_(source);
  if (!impl_->compressed(item) && !impl_->verifies()) {
    impl_->count_read(span_bytes(source)); // else counted whole, when verified
  }
}

void CheckpointReader::read_regions_into(const std::vector<RegionRead>& reads) const {
  // In the order of the files' bytes, so that each thread reads forward.
  std::vector<std::pair<const ItemLocation*, const RegionRead*>> order;
  order.reserve(reads.size());
  for (const RegionRead& read : reads) {
    order.emplace_back(&location(read.index), &read);
  }
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return std::tie(a.first->relative_path, a.first->offset) < std::tie(b.first->relative_path, b.first->offset);
  });
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::exception_ptr error;
  const auto work = [&] {
    for (size_t i = next++; i < order.size() && !failed; i = next++) {
      const RegionRead& read = *order[i].second;
      try {
        at::Tensor destination = read.destination;
        read_region_into(read.index, read.storage_offsets, read.lengths, destination);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) {
          error = std::current_exception();
        }
        failed = true;
      }
    }
  };
  const size_t thread_count =
      std::min({order.size(), static_cast<size_t>(std::max(1u, std::thread::hardware_concurrency())), kMaxReadThreads});
  std::vector<std::thread> threads;
  const auto join = [&threads] {
    for (std::thread& thread : threads) {
      thread.join();
    }
  };
  try {
    for (size_t i = 1; i < thread_count; ++i) {
      threads.emplace_back(work);
    }
  } catch (...) {
    failed = true;
    join();
    throw;
  }
  work();
  join();
  if (error) {
    std::rethrow_exception(error);
  }
}

c10::IValue CheckpointReader::read_object(const ItemIndex& index) const {
  return impl_->object(impl_->item(index));
}

std::string CheckpointReader::read_serialized(const ItemIndex& index) const {
  return impl_->serialized(impl_->item(index));
}

uint64_t CheckpointReader::bytes_read() const {
  return impl_->bytes_read();
}

} // namespace torch_ext::dcp
