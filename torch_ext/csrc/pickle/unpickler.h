#pragma once

// The pickle machine: reads a pickle's opcodes (stack, marks, memo) into
// values, running no code. It knows no module: a set of globals
// (PickleGlobals; torch's are in torch_globals.h) says what a GLOBAL may name
// and what calling it makes, so that every kind of file with a pickle in it
// is read by the same machine under the same limits. Whatever the bytes, it
// fails cleanly:
// - every read is bounds-checked;
// - containers, tuples and tuples of arguments nest at most kMaxDepth levels
//   (state_value.h), so that every walk of what it returns, and the
//   destruction of what it holds when it fails, recurses at most that deep;
// - the memo and DUP share what they refer to, never copy it, and no item,
//   nor all that the globals are handed together, may expand (shared parts
//   counted each time they are met) to more than node_budget() values, so
//   that the work of a load and every later walk are linear in the pickle's
//   size;
// - a container put into another is frozen, so that none holds itself.

#include <ATen/core/ivalue.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace torch_ext::detail {

// Throws: the error for a pickle that is malformed or names what its file
// may not hold (the caller names the file).
using FailUnpickling = std::function<void(const std::string& what)>;

// How many values a walk of one item of a pickle may meet, counting shared
// ones each time they are met, and how many the globals may be handed in
// all: kNodesPerPickleByte per byte of the pickle, and kBaseNodeBudget.
constexpr uint64_t kNodesPerPickleByte = 64;
constexpr uint64_t kBaseNodeBudget = uint64_t{1} << 20;
inline uint64_t node_budget(size_t pickle_size) {
  return kNodesPerPickleByte * pickle_size + kBaseNodeBudget;
}

// What a set of globals makes that is no value: a class or function a GLOBAL
// names, what a persistent id stands for. The machine holds it without
// knowing it, and never puts it into a container.
class PickleObject {
 public:
  virtual ~PickleObject() = default;
};

// One item of the pickle's stack or memo: a value, or an object. Copies
// share what they refer to.
struct PickleItem {
  c10::IValue value; // when object is null
  std::shared_ptr<const PickleObject> object;

  bool is_value() const {
    return object == nullptr;
  }
  // The object, if it is a T.
  template <typename T>
  const T* as() const {
    return dynamic_cast<const T*>(object.get());
  }
};

// A tuple that holds an object, so no value: the arguments of a REDUCE, a
// persistent id. A tuple of values is a value.
struct PickleTuple final : PickleObject {
  std::vector<PickleItem> items;
};

// How far an item reaches: how deep containers nest in it (a leaf: 0), and
// how many values a walk of it meets.
struct PickleShape {
  size_t depth = 0;
  uint64_t nodes = 1;
};

// What a call or a persistent id makes, and how far it reaches (a leaf,
// unless the set says otherwise: a container it makes, say).
struct Made {
  PickleItem item;
  PickleShape shape;
};

// How a set of globals refuses a pickle: through the load's FailUnpickling.
// Checks run on every opcode: build a message only when one fails.
class PickleContext {
 public:
  PickleContext(const FailUnpickling& fail, const size_t& position) : fail_(fail), position_(position) {}

  // Throws, naming the byte being read, unless `condition`.
  void expect(bool condition, const char* what) const {
    if (!condition) {
      malformed(what);
    }
  }
  // Throws, naming the byte being read.
  [[noreturn]] void malformed(const std::string& what) const;
  // Throws `what` as it is: a pickle that asks for what its file may not hold.
  [[noreturn]] void fail(const std::string& what) const;

 private:
  const FailUnpickling& fail_;
  const size_t& position_;
};

// The globals a pickle may name and what they make. Each call may refuse
// through the context; the arguments are the items of the call's tuple.
class PickleGlobals {
 public:
  virtual ~PickleGlobals() = default;
  // GLOBAL and STACK_GLOBAL: what `module.name` stands for. Refuses (fail)
  // a global the file may not name.
  virtual std::shared_ptr<const PickleObject> global(
      const PickleContext& context,
      const std::string& module,
      const std::string& name) = 0;
  // REDUCE: callable(*arguments).
  virtual Made reduce(
      const PickleContext& context,
      const PickleObject& callable,
      const std::vector<PickleItem>& arguments) = 0;
  // NEWOBJ: cls.__new__(cls, *arguments). Refused unless overridden.
  virtual Made new_object(
      const PickleContext& context,
      const PickleObject& cls,
      const std::vector<PickleItem>& arguments);
  // BUILD: `target` takes `state` (its __setstate__, or its __dict__
  // updated). The machine has checked that `target` is in no container yet.
  virtual void build(const PickleContext& context, const PickleItem& target, const PickleItem& state) = 0;
  // BINPERSID: what the persistent id `id` stands for. Refused unless
  // overridden.
  virtual Made persistent_load(const PickleContext& context, const PickleItem& id);
  // The key a dict of the pickle is given for `key`: the key itself, or a
  // hashable stand-in (c10 dicts hash their keys; DCP keys dicts by
  // objects). Refuses a key its file may not hold.
  virtual c10::IValue dict_key(const PickleContext& context, const c10::IValue& key) = 0;
};

// Runs `pickle` with `globals`; every error goes to `fail`.
c10::IValue unpickle(std::string_view pickle, PickleGlobals& globals, const FailUnpickling& fail);

} // namespace torch_ext::detail
