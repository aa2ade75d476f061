#include "unpickler.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <utility>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/io/little_endian.h"
#include "torch_ext/csrc/state/state_value.h"

#include "pickle_opcodes.h"

namespace torch_ext::detail {
namespace {

using namespace pickle;

// An item with how far it reaches; the stack and the memo share nodes, so a
// memo get or a DUP copies a pointer, never what it points to.
struct Node {
  PickleItem item;
  PickleShape shape;
  // Put into a container, a tuple or a BUILD: changed no more, so that the
  // shapes counted for it hold.
  bool frozen = false;
};
using NodePtr = std::shared_ptr<Node>;

bool is_container(const c10::IValue& value) {
  return value.isList() || value.isGenericDict() || value.isTuple();
}

bool is_valid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto byte = static_cast<unsigned char>(text[i]);
    const size_t length = byte < 0x80 ? 1 : (byte >> 5) == 0x6 ? 2 : (byte >> 4) == 0xE ? 3 : (byte >> 3) == 0x1E ? 4 : 0;
    if (length == 0 || text.size() - i < length) {
      return false;
    }
    for (size_t k = 1; k < length; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) {
        return false;
      }
    }
    i += length;
  }
  return true;
}

class Unpickler {
 public:
  Unpickler(std::string_view pickle, PickleGlobals& globals, const FailUnpickling& fail)
      : pickle_(pickle), globals_(globals), context_(fail, position_), node_budget_(node_budget(pickle.size())) {}

  c10::IValue run() {
    for (;;) {
      const uint8_t code = read_u8();
      if (code == STOP) {
        if (stack_.size() != 1 || !marks_.empty()) {
          malformed("STOP with " + std::to_string(stack_.size()) + " items on the stack");
        }
        const NodePtr result = pop();
        expect_value(*result, "the pickled value");
        Node root;
        adopt(root, *result); // settles it, as a container settles what it takes
        return result->item.value;
      }
      step(code);
    }
  }

 private:
  void step(uint8_t code) {
    switch (code) {
      case PROTO:
        read_u8();
        return;
      case FRAME:
        read_bytes(8);
        return;
      case MARK:
        marks_.push_back(stack_.size());
        return;
      case POP:
        pop();
        return;
      case POP_MARK:
        stack_.resize(pop_mark());
        return;
      case DUP:
        expect(!stack_.empty() && (marks_.empty() || marks_.back() < stack_.size()), "DUP without a value");
        stack_.push_back(stack_.back());
        return;
      case NONE:
        push_value(c10::IValue());
        return;
      case NEWTRUE:
      case NEWFALSE:
        push_value(c10::IValue(code == NEWTRUE));
        return;
      case BININT1:
        push_value(c10::IValue(static_cast<int64_t>(read_le(1))));
        return;
      case BININT2:
        push_value(c10::IValue(static_cast<int64_t>(read_le(2))));
        return;
      case BININT:
        push_value(c10::IValue(static_cast<int64_t>(static_cast<int32_t>(read_le(4)))));
        return;
      case LONG1:
        push_value(c10::IValue(read_long(read_u8())));
        return;
      case LONG4:
        push_value(c10::IValue(read_long(read_le(4))));
        return;
      case BINFLOAT: {
        uint64_t bits = 0;
        for (const char byte : read_bytes(8)) { // big-endian
          bits = (bits << 8) | static_cast<unsigned char>(byte);
        }
        double number;
        std::memcpy(&number, &bits, sizeof(number));
        push_value(c10::IValue(number));
        return;
      }
      case SHORT_BINUNICODE:
        push_string(read_bytes(read_u8()));
        return;
      case BINUNICODE:
        push_string(read_bytes(read_le(4)));
        return;
      case BINUNICODE8:
        push_string(read_bytes(read_le(8)));
        return;
      case EMPTY_LIST:
        push_container(c10::impl::GenericList(c10::AnyType::get()));
        return;
      case EMPTY_DICT:
        push_container(c10::impl::GenericDict(c10::AnyType::get(), c10::AnyType::get()));
        return;
      case EMPTY_TUPLE:
        push_tuple(stack_.size());
        return;
      case TUPLE1:
      case TUPLE2:
      case TUPLE3: {
        const size_t count = code - TUPLE1 + 1;
        expect(stack_.size() >= count, "too few items for a tuple");
        push_tuple(stack_.size() - count);
        return;
      }
      case TUPLE:
        push_tuple(pop_mark());
        return;
      case LIST:
      case DICT: {
        const size_t mark = pop_mark();
        NodePtr container = container_node(
            code == LIST ? c10::IValue(c10::impl::GenericList(c10::AnyType::get()))
                         : c10::IValue(c10::impl::GenericDict(c10::AnyType::get(), c10::AnyType::get())));
        fill(*container, mark);
        stack_.push_back(std::move(container));
        return;
      }
      case APPEND:
        expect(stack_.size() >= 2, "APPEND without a list and an item");
        fill_below(stack_.size() - 1);
        return;
      case SETITEM:
        expect(stack_.size() >= 3, "SETITEM without a dict, a key and a value");
        fill_below(stack_.size() - 2);
        return;
      case APPENDS:
      case SETITEMS:
        fill_below(pop_mark());
        return;
      case GLOBAL: {
        const std::string module = read_line();
        const std::string name = read_line();
        push_global(module, name);
        return;
      }
      case STACK_GLOBAL: {
        const std::string name = string_of(*pop());
        const std::string module = string_of(*pop());
        push_global(module, name);
        return;
      }
      case BINPUT:
        memo_put(read_le(1));
        return;
      case LONG_BINPUT:
        memo_put(read_le(4));
        return;
      case MEMOIZE:
        memo_put(memo_.size());
        return;
      case BINGET:
      case LONG_BINGET: {
        const uint64_t index = read_le(code == BINGET ? 1 : 4);
        const auto found = memo_.find(index);
        if (found == memo_.end()) {
          malformed("a get of memo entry " + std::to_string(index) + ", which was never put");
        }
        stack_.push_back(found->second);
        return;
      }
      case BINPERSID: {
        const NodePtr id = pop();
        spend(*id);
        push_made(globals_.persistent_load(context_, id->item));
        return;
      }
      case REDUCE:
      case NEWOBJ: {
        const NodePtr arguments = pop();
        const NodePtr callable = pop();
        call(code, *callable, *arguments);
        return;
      }
      case BUILD:
        build(pop());
        return;
      default:
        position_ -= 1;
        malformed(
            "opcode 0x" + c10::str(std::hex, static_cast<int>(code)) +
            " is not one the restricted unpickler reads; loading runs no code");
    }
  }

  void expect(bool condition, const char* what) const {
    context_.expect(condition, what);
  }

  [[noreturn]] void malformed(const std::string& what) const {
    context_.malformed(what);
  }

  // Bytes.

  uint8_t read_u8() {
    expect(position_ < pickle_.size(), "the pickle ends without STOP (truncated?)");
    return static_cast<uint8_t>(pickle_[position_++]);
  }

  std::string_view read_bytes(uint64_t size) {
    expect(size <= pickle_.size() - position_, "the pickle ends inside a value (truncated?)");
    const std::string_view bytes = pickle_.substr(position_, static_cast<size_t>(size));
    position_ += static_cast<size_t>(size);
    return bytes;
  }

  uint64_t read_le(int size) {
    const std::string_view bytes = read_bytes(static_cast<uint64_t>(size));
    return detail::read_le(reinterpret_cast<const uint8_t*>(bytes.data()), size);
  }

  // LONG1 and LONG4: little-endian two's complement.
  int64_t read_long(uint64_t size) {
    if (size > 8) {
      malformed("an integer of " + std::to_string(size) + " bytes, more than int64 holds");
    }
    if (size == 0) {
      return 0;
    }
    uint64_t value = read_le(static_cast<int>(size));
    if (size < 8 && (value >> (8 * size - 1)) != 0) {
      value |= ~uint64_t{0} << (8 * size); // sign-extend
    }
    return static_cast<int64_t>(value);
  }

  std::string read_line() {
    const size_t end = pickle_.find('\n', position_);
    expect(end != std::string_view::npos, "GLOBAL without a newline (truncated?)");
    std::string line(pickle_.substr(position_, end - position_));
    position_ = end + 1;
    return line;
  }

  // The stack and the memo.

  static NodePtr make_node(PickleItem item, PickleShape shape) {
    auto node = std::make_shared<Node>();
    node->item = std::move(item);
    node->shape = shape;
    return node;
  }

  static NodePtr container_node(c10::IValue container) {
    return make_node(PickleItem{std::move(container), nullptr}, PickleShape{1, 1});
  }

  void push(PickleItem item, PickleShape shape) {
    stack_.push_back(make_node(std::move(item), shape));
  }

  void push_value(c10::IValue value) {
    push(PickleItem{std::move(value), nullptr}, PickleShape{});
  }

  void push_container(c10::IValue container) {
    stack_.push_back(container_node(std::move(container)));
  }

  void push_made(Made made) {
    check_shape(made.shape);
    push(std::move(made.item), made.shape);
  }

  void push_string(std::string_view text) {
    expect(is_valid_utf8(text), "a string that is not valid UTF-8");
    push_value(c10::IValue(std::string(text)));
  }

  NodePtr pop() {
    expect(!stack_.empty() && (marks_.empty() || marks_.back() < stack_.size()), "a pop with no item above the MARK");
    NodePtr node = std::move(stack_.back());
    stack_.pop_back();
    return node;
  }

  size_t pop_mark() {
    expect(!marks_.empty(), "no MARK to pop");
    const size_t mark = marks_.back();
    marks_.pop_back();
    return mark;
  }

  void memo_put(uint64_t index) {
    expect(!stack_.empty(), "a memo put from an empty stack");
    memo_.insert_or_assign(index, stack_.back());
  }

  void expect_value(const Node& node, const char* what) {
    if (!node.item.is_value()) {
      malformed(std::string(what) + " is a global, what a persistent id names or a tuple of arguments, not a value");
    }
  }

  std::string string_of(const Node& node) {
    expect(node.item.is_value() && node.item.value.isString(), "expected a string");
    return node.item.value.toStringRef();
  }

  // Shapes.

  void check_shape(const PickleShape& shape) {
    if (shape.depth > kMaxDepth) {
      malformed("values nested deeper than " + std::to_string(kMaxDepth) + " levels");
    }
    if (shape.nodes > node_budget_) {
      malformed("shared references expand the value to more than " + std::to_string(node_budget_) + " values");
    }
  }

  // What the globals are handed: a call's arguments, a BUILD's state, a
  // persistent id. They may read all of it, and the same memoized item may
  // be handed over many times, so all they are handed is bounded together.
  void spend(const Node& handed) {
    handed_ += handed.shape.nodes;
    if (handed_ > node_budget_) {
      malformed(
          "the arguments of its calls, shared references counted each time, expand to more than " +
          std::to_string(node_budget_) + " values in all");
    }
  }

  // Accounts for `child` going into `parent` (a container, a tuple, the
  // target of a BUILD, the root), and freezes the child: a dict is complete
  // from here on.
  void adopt(Node& parent, Node& child) {
    expect(
        &parent != &child &&
            !(is_container(child.item.value) && is_container(parent.item.value) &&
              child.item.value.internalToPointer() == parent.item.value.internalToPointer()),
        "a container put into itself");
    if (!child.frozen) {
      child.frozen = true;
      if (child.item.value.isGenericDict()) {
        c10::impl::GenericDict dict = child.item.value.toGenericDict();
        settle_key_type(dict);
      }
    }
    parent.shape.depth = std::max(parent.shape.depth, child.shape.depth + 1);
    parent.shape.nodes += child.shape.nodes;
    check_shape(parent.shape);
  }

  // TUPLE*: the items from `first` on. A tuple of values is a value; one
  // holding an object is a PickleTuple.
  void push_tuple(size_t first) {
    expect(first <= stack_.size() && (marks_.empty() || marks_.back() <= first), "too few items for a tuple");
    const auto begin = stack_.begin() + static_cast<std::ptrdiff_t>(first);
    const bool values = std::all_of(begin, stack_.end(), [](const NodePtr& node) { return node->item.is_value(); });
    // Either kind nests and counts as a container does.
    NodePtr tuple = container_node(c10::IValue());
    for (auto it = begin; it != stack_.end(); ++it) {
      adopt(*tuple, **it);
    }
    if (values) {
      std::vector<c10::IValue> items;
      items.reserve(stack_.size() - first);
      for (auto it = begin; it != stack_.end(); ++it) {
        items.push_back((*it)->item.value);
      }
      tuple->item.value = c10::ivalue::Tuple::create(std::move(items));
    } else {
      auto arguments = std::make_shared<PickleTuple>();
      arguments->items.reserve(stack_.size() - first);
      for (auto it = begin; it != stack_.end(); ++it) {
        arguments->items.push_back((*it)->item);
      }
      tuple->item.object = std::move(arguments);
    }
    stack_.resize(first);
    stack_.push_back(std::move(tuple));
  }

  // APPEND(S) and SETITEM(S): the items from `first` on go into the list or
  // dict just below them.
  void fill_below(size_t first) {
    expect(first >= 1 && first <= stack_.size(), "no list or dict below the items");
    const NodePtr container = stack_[first - 1];
    expect_value(*container, "the target of APPEND or SETITEM");
    fill(*container, first);
  }

  void fill(Node& container, size_t first) {
    const c10::IValue& value = container.item.value;
    expect(value.isList() || value.isGenericDict(), "APPEND or SETITEM on a value that is no list or dict");
    expect(!container.frozen, "a container changed after it was put into another");
    if (value.isList()) {
      c10::impl::GenericList list = value.toList();
      for (size_t i = first; i < stack_.size(); ++i) {
        Node& item = *stack_[i];
        expect_value(item, "a list item");
        adopt(container, item);
        list.push_back(item.item.value);
      }
    } else {
      expect((stack_.size() - first) % 2 == 0, "SETITEMS with a key and no value");
      c10::impl::GenericDict dict = value.toGenericDict();
      for (size_t i = first; i < stack_.size(); i += 2) {
        Node& key = *stack_[i];
        Node& item = *stack_[i + 1];
        expect_value(key, "a dict key");
        c10::IValue dict_key = globals_.dict_key(context_, key.item.value);
        expect_value(item, "a dict value");
        adopt(container, key);
        adopt(container, item);
        try {
          dict.insert_or_assign(std::move(dict_key), item.item.value);
        } catch (const c10::Error& error) { // a key c10 cannot hash
          malformed(std::string("a dict key c10 refuses: ") + error.what_without_backtrace());
        }
      }
    }
    stack_.resize(first);
  }

  // Globals, calls and BUILD.

  void push_global(const std::string& module, const std::string& name) {
    push(PickleItem{c10::IValue(), globals_.global(context_, module, name)}, PickleShape{});
  }

  void call(uint8_t code, const Node& callable, const Node& arguments) {
    const std::string opcode = code == REDUCE ? "REDUCE" : "NEWOBJ";
    if (callable.item.is_value()) {
      malformed(opcode + " of a value that is no function or class");
    }
    spend(arguments);
    std::vector<PickleItem> items;
    if (const auto* tuple = arguments.item.as<PickleTuple>()) {
      items = tuple->items;
    } else {
      if (!arguments.item.is_value() || !arguments.item.value.isTuple()) {
        malformed(opcode + " with arguments that are no tuple");
      }
      for (const c10::IValue& value : arguments.item.value.toTupleRef().elements()) {
        items.push_back(PickleItem{value, nullptr});
      }
    }
    push_made(
        code == REDUCE ? globals_.reduce(context_, *callable.item.object, items)
                       : globals_.new_object(context_, *callable.item.object, items));
  }

  void build(const NodePtr& state) {
    expect(!stack_.empty(), "BUILD on an empty stack");
    Node& target = *stack_.back();
    expect(!target.frozen, "a container changed after it was put into another");
    spend(*state);
    globals_.build(context_, target.item, state->item);
    // Walks meet the state inside its target.
    adopt(target, *state);
  }

  std::string_view pickle_;
  size_t position_ = 0;
  PickleGlobals& globals_;
  const PickleContext context_;
  const uint64_t node_budget_;
  uint64_t handed_ = 0; // nodes handed to the globals so far
  std::vector<NodePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, NodePtr> memo_;
};

} // namespace

void PickleContext::malformed(const std::string& what) const {
  fail("malformed pickle at byte " + std::to_string(position_) + ": " + what);
}

void PickleContext::fail(const std::string& what) const {
  fail_(what);
  TORCH_INTERNAL_ASSERT(false, "FailUnpickling returned");
}

Made PickleGlobals::new_object(
    const PickleContext& context,
    const PickleObject& /*cls*/,
    const std::vector<PickleItem>& /*arguments*/) {
  context.expect(false, "NEWOBJ (a class instantiated), which this file may not hold; loading runs no code");
  return {};
}

Made PickleGlobals::persistent_load(const PickleContext& context, const PickleItem& /*id*/) {
  context.expect(false, "a persistent id, which this file may not hold");
  return {};
}

c10::IValue unpickle(std::string_view pickle, PickleGlobals& globals, const FailUnpickling& fail) {
  return Unpickler(pickle, globals, fail).run();
}

} // namespace torch_ext::detail
