#include "file_writer.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/io/crc32.h"

#include "dtypes.h"
#include "integrity.h"

namespace torch_ext {
namespace detail {
namespace {

// Each piece is checksummed, then written while it is still in the cache.
constexpr size_t kPieceBytes = size_t{1} << 20;

std::vector<int64_t> header_shape(const SafetensorsEntry& entry, const SafetensorsDtype& dtype) {
  std::vector<int64_t> shape = entry.shape;
  for (const int64_t dim : shape) {
    TORCH_CHECK_VALUE(dim >= 0, "entry '", entry.name, "' has shape ", shape_text(shape), ", with a negative size");
  }
  if (dtype.name == kPackedPairDtype) {
    // As safetensors.torch writes float4_e2m1fn_x2: elements, not pairs.
    TORCH_CHECK_VALUE(
        !shape.empty(), "entry '", entry.name, "' is a 0-dim float4_e2m1fn_x2 tensor, which safetensors cannot hold");
    TORCH_CHECK_VALUE(
        shape.back() <= std::numeric_limits<int64_t>::max() / 2,
        "entry '",
        entry.name,
        "' has shape ",
        shape_text(shape),
        ", too large");
    shape.back() *= 2;
  }
  return shape;
}

} // namespace

std::vector<HeaderTensor> safetensors_layout(const std::vector<SafetensorsEntry>& entries, std::vector<size_t>& order) {
  std::vector<HeaderTensor> tensors;
  tensors.reserve(entries.size());
  std::unordered_set<std::string> names;
  for (const SafetensorsEntry& entry : entries) {
    TORCH_CHECK_VALUE(names.insert(entry.name).second, "the entry '", entry.name, "' is given twice");
    const SafetensorsDtype* dtype = safetensors_dtype(entry.dtype);
    TORCH_CHECK_VALUE(
        dtype != nullptr, "entry '", entry.name, "' is ", c10::toString(entry.dtype), ", which safetensors has no dtype for");
    HeaderTensor tensor;
    tensor.name = entry.name;
    tensor.dtype = dtype;
    tensor.shape = header_shape(entry, *dtype);
    tensors.push_back(std::move(tensor));
  }
  order.resize(entries.size());
  for (size_t i = 0; i < order.size(); ++i) {
    order[i] = i;
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (tensors[a].dtype->rank != tensors[b].dtype->rank) {
      return tensors[a].dtype->rank > tensors[b].dtype->rank;
    }
    return tensors[a].name < tensors[b].name;
  });
  std::vector<HeaderTensor> placed;
  placed.reserve(tensors.size());
  uint64_t offset = 0;
  for (const size_t i : order) {
    HeaderTensor& tensor = tensors[i];
    std::string why;
    const std::optional<uint64_t> bytes = tensor_bytes(*tensor.dtype, tensor.shape, why);
    TORCH_CHECK_VALUE(bytes.has_value(), "entry '", tensor.name, "' ", why);
    TORCH_CHECK_VALUE(
        *bytes <= std::numeric_limits<uint64_t>::max() - offset, "the entries' bytes overflow 64 bits");
    tensor.begin = offset;
    tensor.end = offset += *bytes;
    placed.push_back(std::move(tensor));
  }
  return placed;
}

SafetensorsMetadata file_metadata(SafetensorsMetadata metadata) {
  std::unordered_set<std::string> keys;
  for (const auto& [key, value] : metadata) {
    TORCH_CHECK_VALUE(keys.insert(key).second, "the metadata key '", key, "' is given twice");
    TORCH_CHECK_VALUE(
        !crc_key_tensor(key), "the metadata key '", key, "' is torch_ext's, for the CRC32 of a tensor");
  }
  if (keys.count("format") == 0) {
    metadata.insert(metadata.begin(), {"format", "pt"});
  }
  return metadata;
}

SafetensorsFileWriter::SafetensorsFileWriter(
    const std::string& file,
    std::vector<HeaderTensor> tensors,
    SafetensorsMetadata metadata)
    : file_(file), tensors_(std::move(tensors)), metadata_(std::move(metadata)), crcs_(tensors_.size(), 0), out_(file) {
  left_ = tensors_.empty() ? 0 : tensors_.back().end;
  const std::string bytes = header();
  data_start_ = bytes.size();
  out_.write(bytes.data(), bytes.size());
}

std::string SafetensorsFileWriter::header() const {
  SafetensorsMetadata metadata = metadata_;
  metadata.reserve(metadata.size() + tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    metadata.emplace_back(crc_metadata_key(tensors_[i].name), crc_text(crcs_[i]));
  }
  return header_bytes(tensors_, metadata);
}

void SafetensorsFileWriter::append(const void* data, size_t size) {
  TORCH_CHECK(
      size <= left_, "writing '", file_, "': ", size, " bytes came for the tensors, which have ", left_, " bytes left");
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    while (tensors_[next_].end <= written_) {
      ++next_; // past the tensors that are done, empty ones included
    }
    const size_t piece = static_cast<size_t>(std::min<uint64_t>({size, tensors_[next_].end - written_, kPieceBytes}));
    crcs_[next_] = crc32(crcs_[next_], bytes, piece);
    out_.write(bytes, piece);
    bytes += piece;
    size -= piece;
    written_ += piece;
    left_ -= piece;
  }
}

void SafetensorsFileWriter::commit() {
  TORCH_CHECK(left_ == 0, "writing '", file_, "': ", left_, " bytes of its tensors never came");
  const std::string bytes = header();
  TORCH_INTERNAL_ASSERT(bytes.size() == data_start_, "a header's length changed with its CRC32s");
  out_.write_at(0, bytes.data(), bytes.size());
  out_.commit();
}

void check_write(const std::string& writing, const std::vector<SafetensorsEntry>& order, size_t next) {
  TORCH_CHECK_VALUE(
      next < order.size(), writing, ": all its ", order.size(), " tensors are written, and write() got one more");
}

void check_commit(const std::string& writing, const std::vector<SafetensorsEntry>& order, size_t next) {
  TORCH_CHECK_VALUE(
      next == order.size(),
      writing,
      ": commit() before its tensor '",
      next < order.size() ? order[next].name : "",
      "' and ",
      order.size() - next - 1,
      " more were written");
}

} // namespace detail

struct SafetensorsWriter::State {
  std::string file;
  std::vector<SafetensorsEntry> order;
  size_t next = 0;
  detail::SafetensorsFileWriter writer;
};

namespace {

std::vector<SafetensorsEntry> in_order(const std::vector<SafetensorsEntry>& entries, const std::vector<size_t>& order) {
  std::vector<SafetensorsEntry> result;
  result.reserve(order.size());
  for (const size_t i : order) {
    result.push_back(entries[i]);
  }
  return result;
}

std::unique_ptr<SafetensorsWriter::State> make_writer(
    const std::string& file,
    const std::vector<SafetensorsEntry>& entries,
    SafetensorsMetadata metadata) {
  TORCH_CHECK_VALUE(!file.empty(), "SafetensorsWriter expected a file name, got ''");
  std::vector<size_t> order;
  std::vector<detail::HeaderTensor> layout = detail::safetensors_layout(entries, order);
  metadata = detail::file_metadata(std::move(metadata));
  return std::unique_ptr<SafetensorsWriter::State>(new SafetensorsWriter::State{
      file, in_order(entries, order), 0, detail::SafetensorsFileWriter(file, std::move(layout), std::move(metadata))});
}

std::string describe(c10::ScalarType dtype, c10::IntArrayRef shape) {
  std::ostringstream text;
  text << c10::toString(dtype) << " of shape " << shape;
  return text.str();
}

} // namespace

SafetensorsWriter::SafetensorsWriter(
    const std::string& file,
    std::vector<SafetensorsEntry> entries,
    SafetensorsMetadata metadata)
    : state_(make_writer(file, entries, std::move(metadata))) {}

SafetensorsWriter::SafetensorsWriter(SafetensorsWriter&&) noexcept = default;
SafetensorsWriter& SafetensorsWriter::operator=(SafetensorsWriter&&) noexcept = default;
SafetensorsWriter::~SafetensorsWriter() = default;

const std::vector<SafetensorsEntry>& SafetensorsWriter::order() const {
  return state_->order;
}

void SafetensorsWriter::write(const at::Tensor& tensor) {
  State& state = *state_;
  detail::check_write("writing '" + state.file + "'", state.order, state.next);
  const SafetensorsEntry& entry = state.order[state.next];
  TORCH_CHECK_VALUE(
      tensor.defined() && tensor.layout() == c10::kStrided && tensor.device().is_cpu() &&
          tensor.scalar_type() == entry.dtype && tensor.sizes() == c10::IntArrayRef(entry.shape),
      "writing '",
      state.file,
      "': its next tensor is '",
      entry.name,
      "', a CPU tensor, ",
      describe(entry.dtype, entry.shape),
      "; write() got ",
      tensor.defined() ? describe(tensor.scalar_type(), tensor.sizes()) + " on " + tensor.device().str()
                       : std::string("an undefined tensor"));
  // Row-major bytes of what the tensor shows, whatever its strides.
  const at::Tensor bytes = tensor.resolve_conj().resolve_neg().contiguous();
  state.writer.append(bytes.const_data_ptr(), bytes.nbytes());
  ++state.next;
}

void SafetensorsWriter::commit() {
  State& state = *state_;
  detail::check_commit("writing '" + state.file + "'", state.order, state.next);
  state.writer.commit();
}

void write_safetensors_file(const std::string& file, const c10::IValue& state_dict, const SafetensorsMetadata& metadata) {
  detail::write_state_dict(
      state_dict, [&](std::vector<SafetensorsEntry> entries) { return SafetensorsWriter(file, std::move(entries), metadata); });
}

} // namespace torch_ext
