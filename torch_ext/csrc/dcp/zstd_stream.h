#pragma once

#include <torch_ext/export.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace torch_ext::detail::dcp {

// A zstd frame written as the data streams in, as upstream's ZStandard
// extension writes an item (python-zstandard's ZstdCompressor, level 3);
// the frame carries a checksum of its content.
class ZstdWriter {
 public:
  using Sink = std::function<void(const void* data, size_t size)>;
  explicit ZstdWriter(Sink sink);
  ZstdWriter(const ZstdWriter&) = delete;
  ZstdWriter& operator=(const ZstdWriter&) = delete;
  ~ZstdWriter();

  void write(const void* data, size_t size);
  // Ends the frame. Nothing may be written after.
  void finish();

 private:
  void drain(const void* data, size_t size, bool end);

  Sink sink_;
  void* context_; // ZSTD_CCtx
  std::string out_;
};

// The content of the zstd frames `compressed` holds, at most `limit` bytes
// of it. Throws, with `what` (which item) in the message, for a damaged or
// truncated frame and for content past `limit`. Exported for the tests,
// which keep their large hostile files compressed.
TORCH_EXT_API std::string zstd_decompress(std::string_view compressed, uint64_t limit, const std::string& what);

} // namespace torch_ext::detail::dcp
