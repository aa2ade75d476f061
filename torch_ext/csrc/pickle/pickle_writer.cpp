#include "pickle_writer.h"

#include <cstring>
#include <utility>

#include <c10/util/Exception.h>

namespace torch_ext::detail::pickle {

PickleWriter::PickleWriter(int protocol) : protocol_(protocol) {
  TORCH_INTERNAL_ASSERT(protocol == 2 || protocol == 4);
  op(PROTO);
  out_.push_back(static_cast<char>(protocol));
}

void PickleWriter::little_endian(uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) {
    out_.push_back(static_cast<char>(value >> (8 * i)));
  }
}

void PickleWriter::integer(int64_t value) {
  if (value >= 0 && value < 256) {
    op(BININT1);
    out_.push_back(static_cast<char>(value));
  } else if (value >= 0 && value < 65536) {
    op(BININT2);
    little_endian(static_cast<uint64_t>(value), 2);
  } else if (value >= INT32_MIN && value <= INT32_MAX) {
    op(BININT);
    little_endian(static_cast<uint64_t>(value), 4);
  } else {
    // The fewest two's-complement bytes that hold it, as Python writes.
    int bytes = 8;
    while (bytes > 1) {
      const int64_t low = -(int64_t{1} << (8 * (bytes - 1) - 1));
      if (value < low || value > -low - 1) {
        break;
      }
      --bytes;
    }
    op(LONG1);
    out_.push_back(static_cast<char>(bytes));
    little_endian(static_cast<uint64_t>(value), bytes);
  }
}

void PickleWriter::binfloat(double value) {
  op(BINFLOAT);
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  for (int shift = 56; shift >= 0; shift -= 8) { // big-endian
    out_.push_back(static_cast<char>(bits >> shift));
  }
}

void PickleWriter::string(const std::string& text) {
  if (protocol_ == 2) {
    op(BINUNICODE);
    little_endian(text.size(), 4);
  } else if (text.size() < 256) {
    op(SHORT_BINUNICODE);
    out_.push_back(static_cast<char>(text.size()));
  } else {
    op(BINUNICODE8);
    little_endian(text.size(), 8);
  }
  out_.append(text);
}

void PickleWriter::tuple_end(size_t size) {
  static constexpr Opcode kSmall[] = {EMPTY_TUPLE, TUPLE1, TUPLE2, TUPLE3};
  op(size <= 3 ? kSmall[size] : TUPLE);
}

void PickleWriter::memo_string(const std::string& text) {
  memoized("X" + text, [&] { string(text); });
}

void PickleWriter::global(const std::string& module, const std::string& name) {
  memoized("c" + module + "\n" + name + "\n", [&] {
    if (protocol_ == 2) {
      op(GLOBAL);
      out_.append(module).push_back('\n');
      out_.append(name).push_back('\n');
    } else {
      string(module);
      string(name);
      op(STACK_GLOBAL);
    }
  });
}

template <typename Write>
void PickleWriter::memoized(const std::string& id, const Write& write) {
  const auto found = memo_.find(id);
  if (found != memo_.end()) {
    op(found->second < 256 ? BINGET : LONG_BINGET);
    little_endian(found->second, found->second < 256 ? 1 : 4);
    return;
  }
  write();
  const auto index = static_cast<uint32_t>(memo_.size());
  memo_.emplace(id, index);
  if (protocol_ == 2) {
    op(index < 256 ? BINPUT : LONG_BINPUT);
    little_endian(index, index < 256 ? 1 : 4);
  } else {
    op(MEMOIZE);
  }
}

std::string PickleWriter::finish() {
  op(STOP);
  return std::move(out_);
}

} // namespace torch_ext::detail::pickle
