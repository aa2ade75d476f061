#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <torch_ext/safetensors.h>

#include "torch_ext/csrc/io/durable_file.h"

#include "header.h"

namespace torch_ext::detail {

// Where `entries` go in a file, as the safetensors package places them:
// ordered by dtype, widest first (the Rust crate's Dtype order, reversed),
// then by name, each tensor's bytes right after the previous one's, so that
// every tensor is aligned for its dtype. Returns their header entries in
// that order; `order[i]` is the index in `entries` of the i-th. Throws a
// ValueError naming the entry for a dtype the format lacks, a 0-dim F4
// tensor or a name given twice.
std::vector<HeaderTensor> safetensors_layout(const std::vector<SafetensorsEntry>& entries, std::vector<size_t>& order);

// `metadata` as a file of ours carries it: checked (no key twice, none of
// ours), `"format": "pt"` first unless it has a "format".
SafetensorsMetadata file_metadata(SafetensorsMetadata metadata);

// One safetensors file whose tensors' bytes the caller streams in, in the
// layout's order: the header goes first with our CRC32s as zeros, each
// tensor's CRC32 is computed as its bytes pass, and commit() writes the
// header again with them (the same length: fixed-width fields), then makes
// the file durable. Destroyed before, it leaves `file` as it was.
// The order of a writer that takes its tensors one by one (SafetensorsWriter,
// SafetensorsFolderWriter), `next` of them written so far: throws a
// ValueError that starts with `writing` ("writing '<file>'") unless one more
// may be written, or unless all are and commit() may come.
void check_write(const std::string& writing, const std::vector<SafetensorsEntry>& order, size_t next);
void check_commit(const std::string& writing, const std::vector<SafetensorsEntry>& order, size_t next);

// Writes the tensors of `state_dict` (safetensors_tensors) through the
// writer that `make` makes of their entries, in its order(), and commits it.
template <typename Make>
void write_state_dict(const c10::IValue& state_dict, const Make& make) {
  std::vector<SafetensorsEntry> entries;
  std::unordered_map<std::string, at::Tensor> by_name;
  for (auto& [entry, tensor] : safetensors_tensors(state_dict)) {
    by_name.emplace(entry.name, std::move(tensor));
    entries.push_back(std::move(entry));
  }
  auto writer = make(std::move(entries));
  for (const SafetensorsEntry& entry : writer.order()) {
    writer.write(by_name.at(entry.name));
  }
  writer.commit();
}

class SafetensorsFileWriter {
 public:
  SafetensorsFileWriter(const std::string& file, std::vector<HeaderTensor> tensors, SafetensorsMetadata metadata);

  // The next `size` bytes of the tensors, concatenated in order; a call may
  // span tensors.
  void append(const void* data, size_t size);
  uint64_t left() const {
    return left_;
  }
  void commit();

 private:
  std::string header() const;

  std::string file_;
  std::vector<HeaderTensor> tensors_;
  SafetensorsMetadata metadata_;
  std::vector<uint32_t> crcs_;
  DurableFile out_;
  uint64_t data_start_ = 0;
  uint64_t written_ = 0; // tensor bytes so far
  uint64_t left_ = 0;
  size_t next_ = 0; // the tensor the next byte belongs to
};

} // namespace torch_ext::detail
