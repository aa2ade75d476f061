// Mutations of a pickle at the level of its opcodes, for the fuzzer: insert,
// delete, duplicate and nest opcodes, swap neighbours (arguments), redirect
// memo gets and puts, change integers and strings, and grow memo bombs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace torch_ext_test {

// One opcode with its argument: bytes [begin, end) of the pickle.
struct PickleOp {
  size_t begin;
  size_t end;
  uint8_t code;
};

// The opcodes of `pickle` up to the first it cannot read (an unknown
// opcode or a truncated argument: the rest is one last op).
inline std::vector<PickleOp> lex_pickle(const std::string& pickle) {
  const auto le = [&](size_t at, int width) {
    uint64_t value = 0;
    for (int i = width - 1; i >= 0; --i) {
      value = (value << 8) | static_cast<unsigned char>(pickle[at + static_cast<size_t>(i)]);
    }
    return value;
  };
  std::vector<PickleOp> ops;
  size_t at = 0;
  while (at < pickle.size()) {
    const auto code = static_cast<uint8_t>(pickle[at]);
    uint64_t argument = 0; // bytes after the opcode
    bool known = true;
    const auto sized = [&](int width) {
      if (pickle.size() - at - 1 < static_cast<size_t>(width)) {
        known = false;
        return;
      }
      argument = static_cast<uint64_t>(width) + le(at + 1, width);
    };
    switch (code) {
      case 'K': case 'h': case 'q': case 0x80: argument = 1; break;
      case 'M': argument = 2; break;
      case 'J': case 'j': case 'r': argument = 4; break;
      case 'G': case 0x95: argument = 8; break;
      case 0x8c: case 0x8a: case 'C': sized(1); break;
      case 'X': case 0x8b: case 'B': sized(4); break;
      case 0x8d: sized(8); break;
      case 'c': {
        const size_t first = pickle.find('\n', at + 1);
        const size_t second = first == std::string::npos ? first : pickle.find('\n', first + 1);
        known = second != std::string::npos;
        argument = known ? second - at : 0;
        break;
      }
      default: break; // no argument (or unknown: taken as one byte)
    }
    if (!known || argument > pickle.size() - at - 1) {
      ops.push_back({at, pickle.size(), code});
      break;
    }
    ops.push_back({at, at + 1 + static_cast<size_t>(argument), code});
    at += 1 + static_cast<size_t>(argument);
  }
  return ops;
}

class PickleMutator {
 public:
  explicit PickleMutator(std::mt19937_64& rng) : rng_(rng) {}

  // `pickle` with 1 to 4 mutations.
  std::string mutate(const std::string& pickle) {
    std::string result = pickle;
    for (int edits = 1 + static_cast<int>(rng_() % 4); edits > 0; --edits) {
      result = mutate_once(result);
    }
    return result;
  }

 private:
  size_t below(size_t bound) {
    return bound == 0 ? 0 : static_cast<size_t>(rng_() % bound);
  }

  // Usually a few, sometimes many: past every depth limit, and enough for
  // work that grows faster than the pickle to show.
  size_t repeats() {
    switch (rng_() % 8) {
      case 0:
        return 20000 + below(180000);
      case 1:
        return 600 + below(2000);
      default:
        return 1 + below(4);
    }
  }

  static std::string le(uint64_t value, int width) {
    std::string bytes(static_cast<size_t>(width), '\0');
    for (int i = 0; i < width; ++i) {
      bytes[static_cast<size_t>(i)] = static_cast<char>(value >> (8 * i));
    }
    return bytes;
  }

  static std::string text(const std::string& value) {
    return "X" + le(value.size(), 4) + value;
  }

  std::string memo_index() {
    return rng_() % 4 == 0 ? "j" + le(below(64), 4) : "h" + std::string(1, static_cast<char>(below(64)));
  }

  std::string integer() {
    static const std::vector<uint64_t> values = {
        0, 1, 2, 7, 255, 0x7FFFFFFF, 0x80000000, uint64_t{1} << 32, uint64_t{1} << 40, uint64_t{1} << 62,
        0x7FFFFFFFFFFFFFFF, 0x8000000000000000, ~uint64_t{0}};
    return "\x8a\x08" + le(values[below(values.size())], 8);
  }

  // A snippet to insert.
  std::string snippet() {
    static const std::vector<std::string> fixed = {
        "(", "0", "1", "2", "N", "\x88", "\x89", "]", "}", ")", "t", "\x85", "\x86", "\x87", "l", "d", "a", "e",
        "s", "u", "b", "R", "\x81", "Q", "\x94", "\x93", ".", "K\x00", "K\x05",
        "ccollections\nOrderedDict\n", "ctorch\nSize\n", "ctorch._utils\n_rebuild_tensor_v2\n",
        "ctorch._utils\n_rebuild_tensor_v3\n", "ctorch._utils\n_rebuild_parameter\n", "ctorch\nFloatStorage\n",
        "ctorch\nDoubleStorage\n", "ctorch\nLongStorage\n", "ctorch.storage\nUntypedStorage\n", "ctorch\nfloat32\n",
        "ctorch\nint64\n", "cos\nsystem\n", "cbuiltins\ngetattr\n"};
    switch (rng_() % 6) {
      case 0:
        return memo_index();
      case 1:
        return integer();
      case 2: {
        static const std::vector<std::string> strings = {"storage", "0", "1", "cpu", "_metadata", "", "data.pkl"};
        return text(strings[below(strings.size())]);
      }
      case 3: // a memo bomb: doubling, through DUP or through the memo
        if (rng_() % 2 == 0) {
          std::string bomb;
          for (size_t i = 0, n = 20 + below(60); i < n; ++i) {
            bomb += "2\x86";
          }
          return bomb;
        } else {
          std::string bomb = "r" + le(1000, 4);
          for (uint64_t i = 0, n = 20 + below(60); i < n; ++i) {
            bomb += "j" + le(1000 + i, 4) + "\x86" + "r" + le(1001 + i, 4);
          }
          return bomb;
        }
      default:
        return fixed[below(fixed.size())];
    }
  }

  std::string mutate_once(const std::string& pickle) {
    const std::vector<PickleOp> ops = lex_pickle(pickle);
    if (ops.empty()) {
      return snippet();
    }
    const auto span = [&](size_t i) { return pickle.substr(ops[i].begin, ops[i].end - ops[i].begin); };
    const size_t i = below(ops.size());
    const size_t before = ops[i].begin;
    std::string result;
    switch (rng_() % 9) {
      case 0: // insert
        return pickle.substr(0, before) + snippet() + pickle.substr(before);
      case 1: { // delete one or a few
        const size_t j = std::min(ops.size() - 1, i + below(3));
        return pickle.substr(0, before) + pickle.substr(ops[j].end);
      }
      case 2: { // duplicate one or a few, some number of times
        const size_t j = std::min(ops.size() - 1, i + below(3));
        const std::string piece = pickle.substr(before, ops[j].end - before);
        result = pickle.substr(0, ops[j].end);
        for (size_t n = repeats(); n > 0 && result.size() < (size_t{8} << 20); --n) {
          result += piece;
        }
        return result + pickle.substr(ops[j].end);
      }
      case 3: { // nest what follows op i in tuples, lists or marks
        const size_t n = repeats();
        std::string wrap;
        switch (rng_() % 3) {
          case 0:
            wrap.assign(n, '\x85'); // TUPLE1 around the item op i pushes
            break;
          case 1:
            wrap = std::string(n, ']') + std::string(n, 'a'); // lists in lists
            break;
          default:
            wrap = std::string(n, '(') + ")" + std::string(n, 't'); // tuples in tuples
            break;
        }
        return pickle.substr(0, ops[i].end) + wrap + pickle.substr(ops[i].end);
      }
      case 4: { // swap neighbours: arguments of a call, a key and its value
        if (i + 1 >= ops.size()) {
          return pickle;
        }
        return pickle.substr(0, before) + span(i + 1) + span(i) + pickle.substr(ops[i + 1].end);
      }
      case 5: { // another memo index for a get or a put
        for (size_t k = 0; k < ops.size(); ++k) {
          const PickleOp& op = ops[(i + k) % ops.size()];
          if (op.code == 'h' || op.code == 'j' || op.code == 'q' || op.code == 'r') {
            const std::string index = op.code == 'h' || op.code == 'j' ? memo_index()
                                                                       : (rng_() % 2 == 0 ? "q" + std::string(1, static_cast<char>(below(64)))
                                                                                          : "r" + le(below(1 << 20), 4));
            return pickle.substr(0, op.begin) + index + pickle.substr(op.end);
          }
        }
        return pickle;
      }
      case 6: { // another integer
        for (size_t k = 0; k < ops.size(); ++k) {
          const PickleOp& op = ops[(i + k) % ops.size()];
          if (op.code == 'K' || op.code == 'M' || op.code == 'J' || op.code == 0x8a) {
            return pickle.substr(0, op.begin) + integer() + pickle.substr(op.end);
          }
        }
        return pickle;
      }
      case 7: { // another string (a storage key, a name) or global
        for (size_t k = 0; k < ops.size(); ++k) {
          const PickleOp& op = ops[(i + k) % ops.size()];
          if (op.code == 'X' || op.code == 0x8c || op.code == 'c') {
            return pickle.substr(0, op.begin) + snippet() + pickle.substr(op.end);
          }
        }
        return pickle;
      }
      default: { // move an op elsewhere
        const size_t j = below(ops.size());
        const std::string piece = span(i);
        std::string without = pickle.substr(0, before) + pickle.substr(ops[i].end);
        const size_t at = std::min(without.size(), ops[j].begin);
        return without.substr(0, at) + piece + without.substr(at);
      }
    }
  }

  std::mt19937_64& rng_;
};

} // namespace torch_ext_test
