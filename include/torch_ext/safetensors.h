#pragma once

// Hugging Face's safetensors format: one file (an 8-byte little-endian header
// length, a JSON header giving each tensor's dtype, shape and data_offsets
// and an optional `__metadata__` string map, then the tensors' bytes back to
// back), or a folder of shards with `model.safetensors.index.json`. Read and
// written as the `safetensors` package does, each reading the other's files;
// ours also carry a CRC32 per tensor in `__metadata__`, which our reader
// checks and the package ignores.

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch_ext/checkpoint_file.h>
#include <torch_ext/export.h>

namespace torch_ext {

// A `__metadata__` map: string keys and values, in order.
using SafetensorsMetadata = std::vector<std::pair<std::string, std::string>>;

// One tensor of a file, as its header describes it; reading it reads nothing else.
struct SafetensorsTensorInfo {
  std::string name;
  // The format's dtype name: "F32", "BF16", "F8_E4M3", "F4", ...
  std::string dtype;
  // Torch's dtype for it; nullopt for F6_E2M3 and F6_E3M2, which torch lacks.
  std::optional<c10::ScalarType> scalar_type;
  // The header's shape, in elements (for F4 torch's last dimension is half
  // of it: float4_e2m1fn_x2 holds two).
  std::vector<int64_t> shape;
  // Where its bytes lie in the file, and how many.
  uint64_t offset = 0;
  uint64_t nbytes = 0;
  // The CRC32 of its bytes that our writer stored; nullopt where the file
  // carries none (files of other writers): then nothing checks this tensor.
  std::optional<uint32_t> crc32;
};

// What checking every CRC32 of a file or folder found.
struct SafetensorsVerification {
  struct Failure {
    std::string name;
    std::string file;
    uint32_t expected = 0; // the header's
    uint32_t actual = 0; // the data's
  };
  std::vector<std::string> verified; // tensors whose CRC32 holds
  std::vector<std::string> unverifiable; // tensors without one: nothing to check
  std::vector<Failure> failed;
  bool ok() const {
    return failed.empty();
  }
};

// A safetensors file, mapped copy-on-write, its header read and checked
// (dtypes known, offsets in order without holes or overlaps and within the
// file, no duplicate names, a header of at most 100,000,000 bytes, as the
// Rust crate checks; and duplicate JSON keys, deep nesting and non-UTF-8
// refused): a damaged or hostile file throws an error naming it. No tensor
// is read until asked for. Copies share the mapping; thread-safe.
class TORCH_EXT_API SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& file);

  const std::string& path() const;
  // In the file's order (by offset), as safetensors.torch.load_file gives them.
  const std::vector<SafetensorsTensorInfo>& tensors() const;
  // Throws a ValueError naming the file if it has no tensor `name`.
  const SafetensorsTensorInfo& info(const std::string& name) const;
  // `__metadata__` without our CRC32 entries, in the header's order.
  const SafetensorsMetadata& metadata() const;
  // The names of the tensors that carry no CRC32: what a load cannot check.
  std::vector<std::string> unverifiable() const;

  // A view of the mapping (copy-on-write: writing to it leaves the file as
  // it is); copied instead where the file places it unaligned for its dtype.
  // With `verify`, its CRC32 is checked first, where it has one, and a
  // mismatch throws naming the file and the tensor.
  at::Tensor tensor(const std::string& name, bool verify = true) const;
  // A dict of name -> tensor in the file's order: every tensor, or those
  // `options.keys` names (exact tensor names), reading only those.
  c10::impl::GenericDict load(const ReadOptions& options = {}) const;
  // Checks every CRC32, throwing for none: the command line's `verify`.
  SafetensorsVerification verify() const;

  struct State;

 private:
  std::shared_ptr<const State> state_;
};

// The name of Hugging Face's index file, and of the single file a folder
// holds when one shard is enough.
inline constexpr const char* kSafetensorsIndexName = "model.safetensors.index.json";
inline constexpr const char* kSafetensorsSingleName = "model.safetensors";
// huggingface_hub's default, 5 GB (decimal).
constexpr uint64_t kDefaultMaxShardSize = 5'000'000'000;

// A folder in Hugging Face's layout: `model.safetensors.index.json`
// (`weight_map`: tensor -> shard file, `metadata.total_size`) and its shards
// `model-0000x-of-0000N.safetensors`, or a lone `model.safetensors`. Every
// shard is opened as a SafetensorsFile; the index must agree with them (each
// tensor in the shard it names and nowhere else, every shard tensor indexed,
// shard names plain file names within the folder).
class TORCH_EXT_API SafetensorsFolder {
 public:
  explicit SafetensorsFolder(const std::string& folder);

  const std::string& path() const;
  // The shards in the order of their names (one for a lone file).
  const std::vector<SafetensorsFile>& shards() const;
  // Every tensor: shard by shard, each in its file's order.
  std::vector<SafetensorsTensorInfo> tensors() const;
  // The shard holding `name`; throws a ValueError naming the folder if none.
  const SafetensorsFile& shard_of(const std::string& name) const;
  // The index's `metadata` (`total_size` and any other entry, each value as
  // JSON text); empty for a lone file, whose metadata is its shard's.
  const std::vector<std::pair<std::string, std::string>>& index_metadata() const;
  std::optional<uint64_t> total_size() const;

  at::Tensor tensor(const std::string& name, bool verify = true) const;
  c10::impl::GenericDict load(const ReadOptions& options = {}) const;
  SafetensorsVerification verify() const;

  struct State;

 private:
  std::shared_ptr<const State> state_;
};

// A tensor to be written: what a file's header says of it before its bytes come.
struct SafetensorsEntry {
  std::string name;
  c10::ScalarType dtype;
  std::vector<int64_t> shape; // torch's
};

// Writes one safetensors file tensor by tensor, so that only one tensor need
// be in memory at a time (a streaming conversion). The header lists every
// entry, ordered as the safetensors package orders them (by dtype, widest
// first, then by name), so that every tensor is aligned for its dtype;
// write() then takes the tensors in that order(). Durable: the file appears
// at commit() (temporary file, fsync, rename, folder fsync); destroyed
// before, it leaves `file` as it was. Adds `"format": "pt"` to the metadata
// unless it has a "format" (transformers refuses a file whose metadata lacks
// it), and our CRC32s.
class TORCH_EXT_API SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& file, std::vector<SafetensorsEntry> entries, SafetensorsMetadata metadata = {});
  SafetensorsWriter(SafetensorsWriter&&) noexcept;
  SafetensorsWriter& operator=(SafetensorsWriter&&) noexcept;
  ~SafetensorsWriter();

  const std::vector<SafetensorsEntry>& order() const;
  // The next entry of order(): a CPU tensor of its dtype and shape (any
  // strides: written in row-major order).
  void write(const at::Tensor& tensor);
  void commit();

  struct State;

 private:
  std::unique_ptr<State> state_;
};

// Writes a folder in Hugging Face's layout, tensor by tensor: the entries
// are split into shards of at most `max_shard_size` bytes of tensors, in
// their order, as huggingface_hub splits them (a larger tensor gets a shard
// of its own); one shard is written as `model.safetensors` without an index.
// User metadata goes into the index (into the file when there is one shard),
// as huggingface_hub puts it. Each shard is durable; commit() writes the
// index last, then removes the files of an earlier save in the same layout
// that this one does not use. An earlier index is removed before the first
// shard is written, so that a folder whose save was cut short reads as
// incomplete rather than as a mix of two saves.
class TORCH_EXT_API SafetensorsFolderWriter {
 public:
  SafetensorsFolderWriter(
      const std::string& folder,
      std::vector<SafetensorsEntry> entries,
      uint64_t max_shard_size = kDefaultMaxShardSize,
      SafetensorsMetadata metadata = {});
  SafetensorsFolderWriter(SafetensorsFolderWriter&&) noexcept;
  SafetensorsFolderWriter& operator=(SafetensorsFolderWriter&&) noexcept;
  ~SafetensorsFolderWriter();

  // Shard by shard, each in its file's order: what write() takes.
  const std::vector<SafetensorsEntry>& order() const;
  // The shards' file names, in order, and which entries each holds.
  const std::vector<std::pair<std::string, std::vector<std::string>>>& shards() const;
  void write(const at::Tensor& tensor);
  void commit();

  struct State;

 private:
  std::unique_ptr<State> state_;
};

// What a safetensors file holds of a state dict: a flat dict of str keys to
// dense CPU tensors of a dtype the format has. Anything else throws naming
// the entry before any file is made: a nested dict, a non-tensor value, a
// dtype such as complex128, and tensors that share memory (tied weights,
// overlapping views), which safetensors.torch.save_file refuses too.
// Returns the entries in the state dict's order.
TORCH_EXT_API std::vector<std::pair<SafetensorsEntry, at::Tensor>> safetensors_tensors(const c10::IValue& state_dict);

// write_safetensors_file: one file, with SafetensorsWriter.
TORCH_EXT_API void write_safetensors_file(
    const std::string& file,
    const c10::IValue& state_dict,
    const SafetensorsMetadata& metadata = {});
// write_safetensors_folder: Hugging Face's sharded layout, with SafetensorsFolderWriter.
TORCH_EXT_API void write_safetensors_folder(
    const std::string& folder,
    const c10::IValue& state_dict,
    uint64_t max_shard_size = kDefaultMaxShardSize,
    const SafetensorsMetadata& metadata = {});

// SafetensorsFile(file).load(options) and SafetensorsFolder(folder).load(options).
TORCH_EXT_API c10::IValue read_safetensors_file(const std::string& file, const ReadOptions& options = {});
TORCH_EXT_API c10::IValue read_safetensors_folder(const std::string& folder, const ReadOptions& options = {});

} // namespace torch_ext
