// How the plans and write results of a sharded save travel through the
// store: integers as 8 little-endian bytes, strings and lists after their
// length. Only ranks of one save read what they wrote; a message cut short
// is an error, not a crash.
#include "sharded_plan.h"

#include <c10/util/Exception.h>

#include "torch_ext/csrc/io/little_endian.h"

namespace torch_ext::detail::dcp {
namespace {

using torch_ext::dcp::ItemIndex;
using torch_ext::dcp::ItemLocation;
using torch_ext::dcp::PathItem;

constexpr const char* kCutShort = "a sharded save's message through the store is cut short";

class Writer {
 public:
  void u64(uint64_t value) {
    append_le(out_, value, 8);
  }
  void i64(int64_t value) {
    u64(static_cast<uint64_t>(value));
  }
  void ints(const std::vector<int64_t>& values) {
    u64(values.size());
    for (const int64_t value : values) {
      i64(value);
    }
  }
  void text(std::string_view value) {
    u64(value.size());
    out_.append(value);
  }
  std::string take() {
    return std::move(out_);
  }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  uint64_t u64() {
    need(8);
    const uint64_t value = read_le(reinterpret_cast<const uint8_t*>(in_.data()), 8);
    in_.remove_prefix(8);
    return value;
  }
  int64_t i64() {
    return static_cast<int64_t>(u64());
  }
  // A count of things of at least `item_bytes` bytes each.
  size_t count(size_t item_bytes) {
    const uint64_t n = u64();
    TORCH_CHECK(n <= in_.size() / item_bytes, kCutShort);
    return static_cast<size_t>(n);
  }
  std::vector<int64_t> ints() {
    std::vector<int64_t> values(count(8));
    for (int64_t& value : values) {
      value = i64();
    }
    return values;
  }
  std::string text() {
    const size_t n = count(1);
    need(n);
    std::string value(in_.substr(0, n));
    in_.remove_prefix(n);
    return value;
  }
  void end() const {
    TORCH_CHECK(in_.empty(), "a sharded save's message through the store has ", in_.size(), " bytes too many");
  }

 private:
  void need(size_t bytes) const {
    TORCH_CHECK(bytes <= in_.size(), kCutShort);
  }
  std::string_view in_;
};

} // namespace

std::string encode_plan(const std::vector<PlannedItem>& items) {
  Writer out;
  out.u64(items.size());
  for (const PlannedItem& item : items) {
    out.text(item.fqn);
    out.u64(item.path.size());
    for (const PathItem& step : item.path) {
      if (const auto* key = std::get_if<std::string>(&step)) {
        out.u64(0);
        out.text(*key);
      } else {
        out.u64(1);
        out.i64(std::get<int64_t>(step));
      }
    }
    out.u64(static_cast<uint64_t>(item.kind));
    out.i64(static_cast<int64_t>(item.dtype));
    out.ints(item.global_size);
    out.ints(item.chunk.offsets);
    out.ints(item.chunk.sizes);
  }
  return out.take();
}

std::vector<PlannedItem> decode_plan(std::string_view bytes) {
  Reader in(bytes);
  std::vector<PlannedItem> items(in.count(8));
  for (PlannedItem& item : items) {
    item.fqn = in.text();
    item.path.resize(in.count(8));
    for (PathItem& step : item.path) {
      if (in.u64() == 0) {
        step = in.text();
      } else {
        step = in.i64();
      }
    }
    const uint64_t kind = in.u64();
    TORCH_CHECK(kind <= static_cast<uint64_t>(PlannedItem::Kind::Object), "a sharded save's plan has an item of kind ", kind);
    item.kind = static_cast<PlannedItem::Kind>(kind);
    item.dtype = static_cast<c10::ScalarType>(in.i64());
    item.global_size = in.ints();
    item.chunk.offsets = in.ints();
    item.chunk.sizes = in.ints();
  }
  in.end();
  return items;
}

std::string encode_writes(const std::vector<bool>& writes) {
  std::string out(writes.size(), '0');
  for (size_t i = 0; i < writes.size(); ++i) {
    out[i] = writes[i] ? '1' : '0';
  }
  return out;
}

std::vector<bool> decode_writes(std::string_view bytes) {
  std::vector<bool> writes(bytes.size());
  for (size_t i = 0; i < bytes.size(); ++i) {
    writes[i] = bytes[i] == '1';
  }
  return writes;
}

std::string encode_results(const std::vector<WriteResult>& results) {
  Writer out;
  out.u64(results.size());
  for (const WriteResult& result : results) {
    out.text(result.index.fqn);
    out.u64(result.index.offset.has_value());
    out.ints(result.index.offset.value_or(std::vector<int64_t>{}));
    out.text(result.location.relative_path);
    out.u64(result.location.offset);
    out.u64(result.location.length);
    out.u64(result.location.transform_descriptors.size());
    for (const std::string& descriptor : result.location.transform_descriptors) {
      out.text(descriptor);
    }
  }
  return out.take();
}

std::vector<WriteResult> decode_results(std::string_view bytes) {
  Reader in(bytes);
  std::vector<WriteResult> results(in.count(8));
  for (WriteResult& result : results) {
    result.index.fqn = in.text();
    const bool has_offset = in.u64() != 0;
    std::vector<int64_t> offset = in.ints();
    if (has_offset) {
      result.index.offset = std::move(offset);
    }
    result.location.relative_path = in.text();
    result.location.offset = in.u64();
    result.location.length = in.u64();
    result.location.transform_descriptors.resize(in.count(8));
    for (std::string& descriptor : result.location.transform_descriptors) {
      descriptor = in.text();
    }
  }
  in.end();
  return results;
}

} // namespace torch_ext::detail::dcp
