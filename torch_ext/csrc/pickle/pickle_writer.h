#pragma once

// The opcodes and arguments of a pickle, written as Python's pickler writes
// them at protocol 2 (torch.save's data.pkl) or 4 (DCP's `.metadata`): the
// one writer that pickle_state and pickle_metadata are made of.

#include <cstdint>
#include <string>
#include <unordered_map>

#include "pickle_opcodes.h"

namespace torch_ext::detail::pickle {

class PickleWriter {
 public:
  // Python's pickler batches APPENDS and SETITEMS by this many items.
  static constexpr size_t kBatchSize = 1000;

  // Starts the pickle: PROTO `protocol` (2 or 4).
  explicit PickleWriter(int protocol);

  void op(Opcode code) {
    out_.push_back(static_cast<char>(code));
  }
  void little_endian(uint64_t value, int bytes);
  // The shortest of BININT1, BININT2, BININT and LONG1, as Python picks.
  void integer(int64_t value);
  void binfloat(double value);
  // BINUNICODE at protocol 2; SHORT_BINUNICODE or BINUNICODE8 at 4.
  void string(const std::string& text);
  // The end of a tuple of `size` items (after a MARK when more than 3).
  void tuple_end(size_t size);

  // A string or global met before is fetched from the memo: at protocol 2 a
  // GLOBAL and BINPUT, at 4 a STACK_GLOBAL and MEMOIZE.
  void memo_string(const std::string& text);
  void global(const std::string& module, const std::string& name);

  // STOP, and the pickle.
  std::string finish();

 private:
  template <typename Write>
  void memoized(const std::string& id, const Write& write);

  int protocol_;
  std::string out_;
  std::unordered_map<std::string, uint32_t> memo_;
};

} // namespace torch_ext::detail::pickle
