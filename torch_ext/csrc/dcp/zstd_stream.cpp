#include "zstd_stream.h"

#include <zstd.h>

#include <algorithm>
#include <memory>
#include <utility>

#include <c10/util/Exception.h>

namespace torch_ext::detail::dcp {
namespace {

// python-zstandard's default level, which upstream's ZStandard uses.
constexpr int kLevel = 3;

void check(size_t result, const char* what) {
  TORCH_CHECK(!ZSTD_isError(result), "zstd ", what, " failed: ", ZSTD_getErrorName(result));
}

} // namespace

ZstdWriter::ZstdWriter(Sink sink) : sink_(std::move(sink)), context_(ZSTD_createCCtx()), out_(ZSTD_CStreamOutSize(), '\0') {
  TORCH_CHECK(context_ != nullptr, "cannot create a zstd compression context: out of memory");
  auto* context = static_cast<ZSTD_CCtx*>(context_);
  check(ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, kLevel), "setup");
  check(ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1), "setup");
}

ZstdWriter::~ZstdWriter() {
  ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(context_));
}

void ZstdWriter::write(const void* data, size_t size) {
  drain(data, size, false);
}

void ZstdWriter::finish() {
  drain(nullptr, 0, true);
}

void ZstdWriter::drain(const void* data, size_t size, bool end) {
  auto* context = static_cast<ZSTD_CCtx*>(context_);
  ZSTD_inBuffer in{data, size, 0};
  for (;;) {
    ZSTD_outBuffer out{out_.data(), out_.size(), 0};
    const size_t left = ZSTD_compressStream2(context, &out, &in, end ? ZSTD_e_end : ZSTD_e_continue);
    check(left, "compression");
    if (out.pos > 0) {
      sink_(out_.data(), out.pos);
    }
    if (end ? left == 0 : in.pos == in.size) {
      return;
    }
  }
}

std::string zstd_decompress(std::string_view compressed, uint64_t limit, const std::string& what) {
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> context(ZSTD_createDCtx(), ZSTD_freeDCtx);
  TORCH_CHECK(context != nullptr, "cannot create a zstd decompression context: out of memory");
  std::string out;
  const unsigned long long declared = ZSTD_getFrameContentSize(compressed.data(), compressed.size());
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != ZSTD_CONTENTSIZE_ERROR && declared <= limit) {
    out.resize(static_cast<size_t>(declared));
  }
  ZSTD_inBuffer in{compressed.data(), compressed.size(), 0};
  size_t produced = 0;
  for (;;) {
    if (produced == out.size()) {
      // One byte past the limit tells content of exactly `limit` bytes
      // from more.
      out.resize(static_cast<size_t>(std::min<uint64_t>(limit + 1, std::max<uint64_t>(2 * out.size(), 1 << 16))));
    }
    ZSTD_outBuffer buffer{out.data() + produced, out.size() - produced, 0};
    const size_t left = ZSTD_decompressStream(context.get(), &buffer, &in);
    TORCH_CHECK(!ZSTD_isError(left), what, " is not a valid zstd stream: ", ZSTD_getErrorName(left));
    produced += buffer.pos;
    TORCH_CHECK(
        produced <= limit, what, " decompresses to more than the ", limit, " bytes it can hold (a zstd bomb?)");
    if (in.pos == in.size && left == 0) {
      break; // every frame whole
    }
    // All input read, room left, and a frame still open: it was cut short.
    TORCH_CHECK(
        in.pos < in.size || buffer.pos == buffer.size, what, " ends inside a zstd frame (truncated?)");
  }
  out.resize(produced);
  return out;
}

} // namespace torch_ext::detail::dcp
