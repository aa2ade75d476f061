#pragma once

// DCP's standard format: the folders that torch.distributed.checkpoint's
// dcp.save writes with FileSystemWriter and dcp.load reads with
// FileSystemReader (`.metadata` and `__<rank>_<i>.distcp` files), read and
// written from C++ without Python.
//
// Two levels. read_dcp_checkpoint / write_dcp_checkpoint read and write a
// whole state dict in one process. Below them, the pieces that a storage
// layer of several ranks is made of (torch_ext.dcp's StorageWriter and
// StorageReader, sharded saves): a data file writer that says where each
// item landed, the metadata commit that rank 0 makes with every rank's
// results, and a reader of single items and of regions of saved chunks into
// a given tensor. All of them run on any thread, without the GIL.

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <torch_ext/checkpoint_file.h>
#include <torch_ext/export.h>

namespace torch_ext {

// How write_dcp_checkpoint and dcp::write_data_files write.
struct DcpWriteOptions {
  // Data files written at once, by as many threads: `__<rank>_0.distcp` to
  // `__<rank>_<thread_count - 1>.distcp`, in [1, 256], as FileSystemWriter's
  // thread_count.
  int64_t thread_count = 1;
  // Compress each item with zstd, as upstream's ZStandard extension
  // (`_extensions=[ZStandard()]`) does: upstream reads it only with the
  // `zstandard` or `pyzstd` module installed.
  bool compress = false;
  // fsync each data file and `.metadata` before renaming it into place, and
  // the folder after. Without, files still appear whole and `.metadata`
  // last, but a crash of the machine may lose them (FileSystemWriter's
  // sync_files=False).
  bool sync = true;
  // dcp::save_sharded only: a part (or a plain tensor) of more bytes is
  // saved as several chunks of whole rows (dim 0) of at most this many
  // bytes each (at least one row), so that a resharding load, which
  // verifies every saved item it reads from whole, reads at most that much
  // past each end of the rows it needs. 0: one chunk per part, as upstream.
  int64_t max_chunk_bytes = int64_t{64} << 20;
};

// Reads the DCP checkpoint in the folder `path` in one process, as
// dcp_to_torch_save then torch.load give it: the nested state dict (dicts
// and lists rebuilt through the metadata's planner_data) with every tensor
// whole, whatever the chunks it was saved in, and non-tensor values as they
// were saved. Runs no code: `.metadata` and non-tensor values are read by
// the restricted unpickler. With `verify`, every record of every item read
// is checked against its CRC32, and a damaged item is an error naming the
// folder, the data file and the key. `keys` reads only the named entries
// (dotted paths, as for read_checkpoint_file) and only their items.
TORCH_EXT_API c10::IValue read_dcp_checkpoint(const std::string& path, const ReadOptions& options = {});

// The entries of the DCP checkpoint in `path` that `fqns` name by their
// flattened keys (as `.metadata` keys them), each read as
// read_dcp_checkpoint reads it (a tensor whole), keyed by fqn in the order
// asked, without rebuilding the nesting: what a conversion that streams a
// few entries at a time reads. Throws a ValueError naming the folder for an
// fqn the checkpoint lacks.
TORCH_EXT_API c10::impl::GenericDict read_dcp_entries(
    const std::string& path,
    const std::vector<std::string>& fqns,
    bool verify = true);

// Writes `state_dict` (a dict of what value_kind() accepts; tensors on the
// CPU) into the folder `path` as dcp.save(state_dict, FileSystemWriter(path))
// of one process does, so that dcp.load, FileSystemReader and
// dcp_to_torch_save read it: keys flattened as upstream flattens them, one
// item per tensor and per non-tensor leaf. Durably: data files fsync'd, then
// `.metadata` written last as the commit (see commit_metadata). A folder
// that held a checkpoint holds either it or the new one, whatever the moment
// of a crash.
TORCH_EXT_API void write_dcp_checkpoint(
    const std::string& path,
    const c10::IValue& state_dict,
    const DcpWriteOptions& options = {});

namespace dcp {

// `.metadata`, the commit of a DCP folder.
constexpr std::string_view kMetadataFileName = ".metadata";
// upstream's CURRENT_DCP_VERSION, which a save records.
constexpr std::string_view kVersion = "1.0.0";
// The transform_descriptors of a zstd-compressed item.
constexpr std::string_view kZstdDescriptor = "stream.zstd/1";

// `__<rank>_<index>.distcp`, as FileSystemWriter names its data files.
TORCH_EXT_API std::string data_file_name(int64_t rank, int64_t index);

// An element of an object path (planner_data): a dict key or a list index.
using PathItem = std::variant<std::string, int64_t>;
using ObjectPath = std::vector<PathItem>;

// ChunkStorageMetadata: the box of a tensor that one saved item holds.
struct Chunk {
  std::vector<int64_t> offsets;
  std::vector<int64_t> sizes;
  bool operator==(const Chunk& other) const {
    return offsets == other.offsets && sizes == other.sizes;
  }
};

// TensorStorageMetadata with its TensorProperties.
struct TensorEntry {
  c10::ScalarType dtype = c10::ScalarType::Float;
  std::vector<int64_t> size;
  std::vector<Chunk> chunks;
  // Deprecated upstream and kept only to be written back as read.
  bool requires_grad = false;
  bool pin_memory = false;
  int64_t memory_format = 0; // _MEM_FORMAT_ENCODING: 0 contiguous, 1 channels_last, 2 preserve
};

// BytesStorageMetadata: a non-tensor value, saved as torch.save of it.
struct BytesEntry {};

using Entry = std::variant<TensorEntry, BytesEntry>;

// MetadataIndex: which item of an entry. Tensor chunks have the chunk's
// offsets (empty for a 0-dim tensor); byte items none. `index` is a hint:
// items are the same when their fqn and offset are.
struct ItemIndex {
  std::string fqn;
  std::optional<std::vector<int64_t>> offset;
  std::optional<int64_t> index;
  bool operator==(const ItemIndex& other) const {
    return fqn == other.fqn && offset == other.offset;
  }
};

// _StorageInfo: where an item's bytes are.
struct ItemLocation {
  std::string relative_path;
  uint64_t offset = 0;
  uint64_t length = 0;
  std::vector<std::string> transform_descriptors; // empty: none (the field is left out)
};

// StorageMeta. checkpoint_id is the folder as saved (a pathlib.PosixPath).
struct StorageMeta {
  std::optional<std::string> checkpoint_id;
  std::optional<std::string> save_id;
  std::optional<std::string> load_id;
  std::vector<std::string> modules;
};

// Metadata, in the order upstream keeps it (state_dict_metadata's order is
// the state dict's).
struct Metadata {
  std::vector<std::pair<std::string, Entry>> state_dict_metadata;
  // planner_data: the object path of each flattened key. nullopt when the
  // state dict was not flattened (keys are then top-level).
  std::optional<std::vector<std::pair<std::string, ObjectPath>>> planner_data;
  std::vector<std::pair<ItemIndex, ItemLocation>> storage_data;
  std::optional<StorageMeta> storage_meta;
  std::optional<std::string> version;
};

// Reads `<folder>/.metadata` through the restricted unpickler: only the
// classes and globals DCP's metadata is made of; a pickle naming any other
// global is refused, naming it, and nothing of it runs. The result is
// checked for consistency (chunks inside their tensor, an item for every
// chunk, sizes that fit int64) so that reads can trust it.
TORCH_EXT_API Metadata read_metadata(const std::string& folder);

// The pickle (protocol 4) of `metadata` that upstream's FileSystemReader
// (plain pickle.load) reads back as the same Metadata.
TORCH_EXT_API std::string pickle_metadata(const Metadata& metadata);

// The commit rule of a DCP folder, stated once: a folder holds a checkpoint
// when it holds `.metadata`, which is written last. prepare_folder creates
// the folder and removes a previous commit durably (unlink, fsync of the
// folder) before any data file is written, so that a crash while data files
// are rewritten leaves no `.metadata` over data it does not describe; with
// several ranks, rank 0 calls it before any rank writes. commit_metadata
// writes `.metadata` into a temporary file, fsyncs it, renames it into place
// and fsyncs the folder; call it once every data file is committed
// (DataFileWriter::commit makes a file and its name durable).
// With `sync` false, `.metadata` is renamed into place without fsync (see
// DcpWriteOptions::sync).
TORCH_EXT_API void prepare_folder(const std::string& folder);
TORCH_EXT_API void commit_metadata(const std::string& folder, const Metadata& metadata, bool sync = true);

// What a written item was and where it landed: one entry of
// Metadata::storage_data, and what upstream's WriteResult holds.
struct WriteResult {
  ItemIndex index;
  ItemLocation location;
};

// One data file of a save: items (each a torch.save archive, optionally
// zstd-compressed) back to back. The file appears, fsync'd, at commit();
// destroyed before, it leaves no file. Not thread-safe: one writer per
// thread.
class TORCH_EXT_API DataFileWriter {
 public:
  // `relative_path`: the file's name in `folder` (data_file_name()).
  // `sync`: see DcpWriteOptions::sync.
  DataFileWriter(const std::string& folder, std::string relative_path, bool compress = false, bool sync = true);
  DataFileWriter(const DataFileWriter&) = delete;
  DataFileWriter& operator=(const DataFileWriter&) = delete;
  ~DataFileWriter();

  // A tensor chunk (on the CPU) as torch.save writes it: its elements only,
  // contiguous, whatever storage it views. Errors name `index`'s key.
  WriteResult write_tensor(ItemIndex index, const at::Tensor& tensor);
  // A non-tensor value (what value_kind() accepts) as torch.save(value).
  WriteResult write_object(ItemIndex index, const c10::IValue& value);
  // An item already serialized by torch.save (Python's non-tensor values).
  WriteResult write_serialized(ItemIndex index, std::string_view torch_save_bytes);
  // fsyncs the file and puts it in place.
  void commit();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// One item of a rank's save.
struct SaveItem {
  ItemIndex index;
  // A tensor chunk (on the CPU) or a non-tensor value (what value_kind()
  // accepts)...
  c10::IValue value;
  // ...or, when set, a non-tensor value that torch.save serialized already
  // (Python's), written as it is.
  std::optional<std::string> torch_save_bytes;
};

// Throws, saying what was expected, unless `options` are valid (the bound
// of thread_count); a save checks them before it touches any file.
TORCH_EXT_API void check_write_options(const DcpWriteOptions& options);

// What one rank writes of a save (FileSystemWriter.write_data): `items`
// dealt into options.thread_count data files `__<rank>_<i>.distcp` as
// upstream deals them (non-tensor items round-robin, tensors largest first
// to the least full file; a file left without items is written empty),
// written by as many threads, each file committed. Returns where every item
// landed, file by file. The folder's commit rule: rank 0 calls
// prepare_folder before any rank writes, and commit_metadata with every
// rank's results once all have written.
TORCH_EXT_API std::vector<WriteResult> write_data_files(
    const std::string& folder,
    int64_t rank,
    const std::vector<SaveItem>& items,
    const DcpWriteOptions& options = {});

// One read of a load plan (upstream's ReadItem of a tensor): the region of
// the saved chunk `index` that starts at `storage_offsets` and spans
// `lengths`, into `destination`.
struct RegionRead {
  ItemIndex index;
  std::vector<int64_t> storage_offsets;
  std::vector<int64_t> lengths;
  at::Tensor destination;
};

// Writes a DCP checkpoint leaf by leaf into the folder `path`, as
// write_dcp_checkpoint writes one with a single thread (one data file), so
// that a conversion need hold only the leaf it writes: the folder is
// prepared (prepare_folder) at construction, each write() adds an item, and
// commit() writes `.metadata`. Destroyed before commit(), it leaves a folder
// without `.metadata`, which no reader takes for a checkpoint. Not
// thread-safe.
class TORCH_EXT_API DcpWriter {
 public:
  explicit DcpWriter(const std::string& path, bool compress = false);
  DcpWriter(const DcpWriter&) = delete;
  DcpWriter& operator=(const DcpWriter&) = delete;
  ~DcpWriter();

  // The leaf at `path` (planner_data's object path; its key is upstream's
  // flattening of it): a CPU tensor, saved whole, or a value value_kind()
  // accepts. Throws a ValueError for a key written before.
  void write(const ObjectPath& path, const c10::IValue& value);
  void commit();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads the items of a committed DCP folder. Thread-safe: any number of
// threads may read through one reader; files are mapped once, and with
// `verify` each item's records are checked once, when first read.
class TORCH_EXT_API CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& folder, bool verify = true);
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;
  ~CheckpointReader();

  const std::string& folder() const;
  const Metadata& metadata() const;
  // Where an item lies; throws naming the folder unless the metadata has it.
  const ItemLocation& location(const ItemIndex& index) const;

  // The saved chunk `index` as a tensor of its chunk's sizes. Uncompressed
  // items are views of the mapped file (copy-on-write), compressed ones
  // their own memory.
  at::Tensor read_tensor(const ItemIndex& index) const;
  // Copies the region of the saved chunk `index` that starts at
  // `storage_offsets` (relative to the chunk) and spans `lengths` into
  // `destination`, a tensor of sizes `lengths` (of another dtype than the
  // entry's, values are converted as Tensor::copy_ converts them). Of an
  // uncompressed item only the bytes between the region's first and last
  // element are touched, once its CRC32s are checked (with `verify`, which
  // reads the whole item once).
  void read_region_into(
      const ItemIndex& index,
      const std::vector<int64_t>& storage_offsets,
      const std::vector<int64_t>& lengths,
      at::Tensor& destination) const;
  // Every read of `reads`, as read_region_into does them, by several
  // threads (at most one per hardware thread, and 8), each taking the next
  // read in the order of the items' files and offsets. The first error is
  // raised once every thread stopped; reads not yet started are not done.
  void read_regions_into(const std::vector<RegionRead>& reads) const;
  // A non-tensor item, unpickled with the restricted unpickler.
  c10::IValue read_object(const ItemIndex& index) const;
  // An item's torch.save archive, decompressed and verified, for a caller
  // that unpickles it itself (Python's dcp.load).
  std::string read_serialized(const ItemIndex& index) const;

  // The bytes this reader has read of its files so far: each item
  // verified (whole, once) or decompressed (each time); without `verify`,
  // each region of an uncompressed item from its first to its last
  // element; each chunk that read_tensor gives. What a test of a resharding load compares with the
  // bytes a rank owns.
  uint64_t bytes_read() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace dcp
} // namespace torch_ext
