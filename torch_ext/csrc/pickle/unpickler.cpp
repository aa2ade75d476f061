#include "unpickler.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "torch_ext/csrc/state/state_value.h"

#include "dtypes.h"
#include "pickle_opcodes.h"

namespace torch_ext::detail {
namespace {

using namespace pickle;

// What a GLOBAL may name.
enum class Global : uint8_t {
  OrderedDict,
  Size,
  RebuildTensorV2,
  RebuildTensorV3,
  RebuildParameter,
  StorageClass, // typed (dtype set) or UntypedStorage (no dtype)
  Dtype,
};

struct Item {
  enum class Kind : uint8_t {
    Value,
    Global,
    Storage, // from a persistent id: `value` holds the c10::Storage
    Arguments, // a tuple holding a global or a storage: REDUCE's and BINPERSID's
  };
  Kind kind = Kind::Value;
  Global global = Global::OrderedDict;
  std::optional<c10::ScalarType> dtype; // StorageClass, Dtype, Storage
  c10::IValue value;
  std::vector<Item> items; // Arguments
};

// Per container: how deep it nests, how many values a walk of it meets,
// whether it is frozen (inside another container, so no longer changed),
// and for an OrderedDict its attributes, marked once it is adopted.
struct Shape {
  size_t depth = 1;
  uint64_t nodes = 1;
  bool frozen = false;
  std::optional<c10::impl::GenericDict> ordered_dict_attributes;
};

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
  Unpickler(std::string_view pickle, const LoadStorage& load_storage, const FailUnpickling& fail)
      : pickle_(pickle),
        load_storage_(load_storage),
        fail_(fail),
        node_limit_(uint64_t{64} * pickle.size() + (uint64_t{1} << 20)) {}

  c10::IValue run() {
    for (;;) {
      const uint8_t code = read_u8();
      if (code == STOP) {
        expect(stack_.size() == 1 && marks_.empty(), "STOP with " + std::to_string(stack_.size()) + " items on the stack");
        c10::IValue result = value_of(pop(), "the pickled value");
        Shape root;
        adopt(root, c10::IValue(), result);
        return result;
      }
      step(code);
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    fail_(what);
    TORCH_INTERNAL_ASSERT(false, "FailUnpickling returned");
  }

  void expect(bool condition, const std::string& what) {
    if (!condition) {
      fail("malformed pickle at byte " + std::to_string(position_) + ": " + what);
    }
  }

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
        push(c10::IValue());
        return;
      case NEWTRUE:
      case NEWFALSE:
        push(c10::IValue(code == NEWTRUE));
        return;
      case BININT1:
        push(c10::IValue(static_cast<int64_t>(read_le(1))));
        return;
      case BININT2:
        push(c10::IValue(static_cast<int64_t>(read_le(2))));
        return;
      case BININT:
        push(c10::IValue(static_cast<int64_t>(static_cast<int32_t>(read_le(4)))));
        return;
      case LONG1:
        push(c10::IValue(read_long(read_u8())));
        return;
      case LONG4:
        push(c10::IValue(read_long(read_le(4))));
        return;
      case BINFLOAT: {
        uint64_t bits = 0;
        for (const char byte : read_bytes(8)) { // big-endian
          bits = (bits << 8) | static_cast<unsigned char>(byte);
        }
        double number;
        std::memcpy(&number, &bits, sizeof(number));
        push(c10::IValue(number));
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
        push(new_container(c10::impl::GenericList(c10::AnyType::get())));
        return;
      case EMPTY_DICT:
        push(new_container(c10::impl::GenericDict(c10::AnyType::get(), c10::AnyType::get())));
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
        c10::IValue container = new_container(
            code == LIST ? c10::IValue(c10::impl::GenericList(c10::AnyType::get()))
                         : c10::IValue(c10::impl::GenericDict(c10::AnyType::get(), c10::AnyType::get())));
        fill(container, mark);
        push(std::move(container));
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
        const std::string name = string_of(pop());
        const std::string module = string_of(pop());
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
        expect(found != memo_.end(), "a get of memo entry " + std::to_string(index) + ", which was never put");
        stack_.push_back(found->second);
        return;
      }
      case BINPERSID:
        push_storage(pop());
        return;
      case REDUCE: {
        Item arguments = pop();
        Item callable = pop();
        reduce(callable, arguments);
        return;
      }
      case BUILD:
        build(pop());
        return;
      default:
        position_ -= 1;
        expect(
            false,
            "opcode 0x" + c10::str(std::hex, static_cast<int>(code)) +
                " is not one torch.save writes for a state dict; loading runs no code");
    }
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
    uint64_t value = 0;
    for (int i = size - 1; i >= 0; --i) {
      value = (value << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
    }
    return value;
  }

  // LONG1 and LONG4: little-endian two's complement.
  int64_t read_long(uint64_t size) {
    expect(size <= 8, "an integer of " + std::to_string(size) + " bytes, more than int64 holds");
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

  void push(c10::IValue value) {
    Item item;
    item.value = std::move(value);
    stack_.push_back(std::move(item));
  }

  void push_string(std::string_view text) {
    expect(is_valid_utf8(text), "a string that is not valid UTF-8");
    push(c10::IValue(std::string(text)));
  }

  Item pop() {
    expect(!stack_.empty() && (marks_.empty() || marks_.back() < stack_.size()), "a pop with no item above the MARK");
    Item item = std::move(stack_.back());
    stack_.pop_back();
    return item;
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

  c10::IValue value_of(const Item& item, const std::string& what) {
    expect(item.kind == Item::Kind::Value, what + " is a class, storage or argument list, not a value");
    return item.value;
  }

  std::string string_of(const Item& item) {
    expect(item.kind == Item::Kind::Value && item.value.isString(), "expected a string");
    return item.value.toStringRef();
  }

  // Containers. Every one made is kept until the end, so that no address
  // in shapes_ is reused.

  c10::IValue new_container(c10::IValue container, Shape shape = {}) {
    shapes_.insert_or_assign(container.internalToPointer(), std::move(shape));
    made_.push_back(container);
    return container;
  }

  static bool is_container(const c10::IValue& value) {
    return value.isList() || value.isGenericDict() || value.isTuple();
  }

  Shape& shape_of(const c10::IValue& container) {
    return shapes_.at(container.internalToPointer());
  }

  // Accounts for `child` going into `parent_value` (None: a new tuple, or
  // the result), whose shape is `parent`. The child is frozen from then on.
  void adopt(Shape& parent, const c10::IValue& parent_value, const c10::IValue& child) {
    if (!is_container(child)) {
      parent.nodes += 1;
    } else {
      expect(
          parent_value.isNone() || child.internalToPointer() != parent_value.internalToPointer(),
          "a container put into itself");
      Shape& shape = shape_of(child);
      if (child.isGenericDict() && !shape.frozen) { // complete from here on
        c10::impl::GenericDict dict = child.toGenericDict();
        settle_key_type(dict);
        if (shape.ordered_dict_attributes) {
          mark_ordered_dict(dict, *shape.ordered_dict_attributes);
        }
      }
      shape.frozen = true;
      parent.depth = std::max(parent.depth, shape.depth + 1);
      parent.nodes += shape.nodes;
    }
    expect(parent.depth <= kMaxDepth, "values nested deeper than " + std::to_string(kMaxDepth) + " levels");
    expect(
        parent.nodes <= node_limit_,
        "shared references expand the value to more than " + std::to_string(node_limit_) + " values");
  }

  // TUPLE*: the items from `first` on. A tuple of values is a value; one
  // holding a global or a storage is an argument list.
  void push_tuple(size_t first) {
    expect(first <= stack_.size() && (marks_.empty() || marks_.back() <= first), "too few items for a tuple");
    const bool values = std::all_of(
        stack_.begin() + static_cast<std::ptrdiff_t>(first), stack_.end(), [](const Item& item) {
          return item.kind == Item::Kind::Value;
        });
    if (!values) {
      Item arguments;
      arguments.kind = Item::Kind::Arguments;
      arguments.items.assign(
          std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(first)),
          std::make_move_iterator(stack_.end()));
      stack_.resize(first);
      stack_.push_back(std::move(arguments));
      return;
    }
    std::vector<c10::IValue> items;
    items.reserve(stack_.size() - first);
    Shape shape;
    for (size_t i = first; i < stack_.size(); ++i) {
      adopt(shape, c10::IValue(), stack_[i].value);
      items.push_back(std::move(stack_[i].value));
    }
    stack_.resize(first);
    push(new_container(c10::ivalue::Tuple::create(std::move(items)), shape));
  }

  // APPEND(S) and SETITEM(S): the items from `first` on go into the list or
  // dict just below them.
  void fill_below(size_t first) {
    expect(first >= 1 && first <= stack_.size(), "no list or dict below the items");
    const c10::IValue container = value_of(stack_[first - 1], "the target of APPEND or SETITEM");
    expect(container.isList() || container.isGenericDict(), "APPEND or SETITEM on a value that is no list or dict");
    fill(container, first);
  }

  void fill(const c10::IValue& container, size_t first) {
    Shape& shape = shape_of(container);
    expect(!shape.frozen, "a container changed after it was put into another");
    if (container.isList()) {
      c10::impl::GenericList list = container.toList();
      for (size_t i = first; i < stack_.size(); ++i) {
        c10::IValue item = value_of(stack_[i], "a list item");
        adopt(shape, container, item);
        list.push_back(std::move(item));
      }
    } else {
      expect((stack_.size() - first) % 2 == 0, "SETITEMS with a key and no value");
      c10::impl::GenericDict dict = container.toGenericDict();
      for (size_t i = first; i < stack_.size(); i += 2) {
        c10::IValue key = value_of(stack_[i], "a dict key");
        expect(is_valid_key(key), std::string("a dict key of type ") + key.tagKind() + "; keys are str, int, float or bool");
        c10::IValue value = value_of(stack_[i + 1], "a dict value");
        adopt(shape, container, value);
        dict.insert_or_assign(std::move(key), std::move(value));
      }
    }
    stack_.resize(first);
  }

  // Globals, persistent ids, REDUCE and BUILD.

  void push_global(const std::string& module, const std::string& name) {
    Item item;
    item.kind = Item::Kind::Global;
    if (module == "collections" && name == "OrderedDict") {
      item.global = Global::OrderedDict;
    } else if (module == "torch" && name == "Size") {
      item.global = Global::Size;
    } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
      item.global = Global::RebuildTensorV2;
    } else if (module == "torch._utils" && name == "_rebuild_tensor_v3") {
      item.global = Global::RebuildTensorV3;
    } else if (module == "torch._utils" && name == "_rebuild_parameter") {
      item.global = Global::RebuildParameter;
    } else if (module == "torch.storage" && name == "UntypedStorage") {
      item.global = Global::StorageClass;
    } else if (module == "torch" && dtype_from_storage_class(name)) {
      item.global = Global::StorageClass;
      item.dtype = dtype_from_storage_class(name);
    } else if (module == "torch" && dtype_from_python_name(name)) {
      item.global = Global::Dtype;
      item.dtype = dtype_from_python_name(name);
    } else {
      fail(
          "its pickle names the global '" + module + "." + name +
          "', which a checkpoint may not hold; loading runs no code, and allows only torch's tensor rebuild "
          "functions, storage classes and dtypes, collections.OrderedDict and torch.Size");
    }
    stack_.push_back(std::move(item));
  }

  bool is_value(const Item& item, bool (c10::IValue::*test)() const) const {
    return item.kind == Item::Kind::Value && (item.value.*test)();
  }

  // ('storage', <storage class>, key, location, numel). The location is
  // not read: loading maps every storage onto the CPU.
  void push_storage(const Item& id) {
    expect(id.kind == Item::Kind::Arguments && id.items.size() == 5, "a persistent id that is not a storage");
    const std::vector<Item>& fields = id.items;
    expect(
        is_value(fields[0], &c10::IValue::isString) && fields[0].value.toStringRef() == "storage" &&
            fields[1].kind == Item::Kind::Global && fields[1].global == Global::StorageClass &&
            is_value(fields[2], &c10::IValue::isString) && is_value(fields[4], &c10::IValue::isInt),
        "a malformed storage id");
    const std::string& key = fields[2].value.toStringRef();
    auto [cached, added] = storages_.try_emplace(key);
    if (added) {
      cached->second = load_storage_(key);
    }
    const c10::Storage& storage = cached->second;
    const std::optional<c10::ScalarType> dtype = fields[1].dtype;
    const uint64_t item_size = dtype ? c10::elementSize(*dtype) : 1;
    const int64_t numel = fields[4].value.toInt();
    expect(
        numel >= 0 && storage.nbytes() % item_size == 0 && static_cast<uint64_t>(numel) == storage.nbytes() / item_size,
        "storage '" + key + "' claims " + std::to_string(numel) + " elements of " + std::to_string(item_size) +
            " bytes; its record holds " + std::to_string(storage.nbytes()) + " bytes");
    Item item;
    item.kind = Item::Kind::Storage;
    item.dtype = dtype;
    item.value = c10::IValue(storage);
    stack_.push_back(std::move(item));
  }

  void reduce(const Item& callable, const Item& arguments_item) {
    expect(callable.kind == Item::Kind::Global, "REDUCE of a value that is no function or class");
    std::vector<Item> arguments;
    if (arguments_item.kind == Item::Kind::Arguments) {
      arguments = arguments_item.items;
    } else {
      expect(is_value(arguments_item, &c10::IValue::isTuple), "REDUCE with arguments that are no tuple");
      for (const c10::IValue& value : arguments_item.value.toTupleRef().elements()) {
        Item item;
        item.value = value;
        arguments.push_back(std::move(item));
      }
    }
    switch (callable.global) {
      case Global::OrderedDict: {
        expect(arguments.empty(), "OrderedDict() with arguments");
        Shape shape;
        shape.ordered_dict_attributes = c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
        push(new_container(c10::impl::GenericDict(c10::AnyType::get(), c10::AnyType::get()), std::move(shape)));
        return;
      }
      case Global::Size: {
        expect(arguments.size() == 1 && is_value(arguments[0], &c10::IValue::isTuple), "torch.Size() without a tuple");
        const auto& sizes = arguments[0].value.toTupleRef().elements();
        expect(
            std::all_of(sizes.begin(), sizes.end(), [](const c10::IValue& size) { return size.isInt(); }),
            "torch.Size() of a value that is no int");
        c10::IValue tuple(c10::ivalue::Tuple::create(std::vector<c10::IValue>(sizes.begin(), sizes.end())));
        mark_size(tuple);
        Shape shape;
        shape.nodes += sizes.size();
        push(new_container(std::move(tuple), shape));
        return;
      }
      case Global::RebuildTensorV2:
      case Global::RebuildTensorV3:
        push(rebuild_tensor(callable.global == Global::RebuildTensorV3, arguments));
        return;
      case Global::RebuildParameter: {
        // (data, requires_grad, backward_hooks): a Parameter; we keep its data.
        expect(
            arguments.size() == 3 && is_value(arguments[0], &c10::IValue::isTensor) &&
                is_value(arguments[1], &c10::IValue::isBool),
            "a malformed _rebuild_parameter");
        at::Tensor data = arguments[0].value.toTensor().detach();
        data.set_requires_grad(arguments[1].value.toBool());
        push(std::move(data));
        return;
      }
      case Global::StorageClass:
      case Global::Dtype:
        expect(false, "a storage class or dtype called as a function");
    }
  }

  std::vector<int64_t> int_tuple(const Item& item, const char* what) {
    expect(is_value(item, &c10::IValue::isTuple), std::string("a tensor whose ") + what + " is no tuple");
    std::vector<int64_t> values;
    for (const c10::IValue& value : item.value.toTupleRef().elements()) {
      expect(value.isInt() && value.toInt() >= 0, std::string("a tensor whose ") + what + " holds no int >= 0");
      values.push_back(value.toInt());
    }
    return values;
  }

  // (storage, storage_offset, size, stride, requires_grad, backward_hooks
  //  [, dtype: v3 only][, metadata])
  c10::IValue rebuild_tensor(bool v3, const std::vector<Item>& arguments) {
    const size_t required = v3 ? 7 : 6;
    expect(arguments.size() == required || arguments.size() == required + 1, "a tensor with the wrong arguments");
    expect(arguments[0].kind == Item::Kind::Storage, "a tensor without a storage");
    expect(is_value(arguments[1], &c10::IValue::isInt) && arguments[1].value.toInt() >= 0, "a tensor offset that is no int >= 0");
    const std::vector<int64_t> sizes = int_tuple(arguments[2], "size");
    const std::vector<int64_t> strides = int_tuple(arguments[3], "stride");
    expect(sizes.size() == strides.size(), "a tensor whose size and stride differ in length");
    expect(is_value(arguments[4], &c10::IValue::isBool), "a tensor whose requires_grad is no bool");
    expect(
        is_value(arguments[5], &c10::IValue::isGenericDict) && arguments[5].value.toGenericDict().empty(),
        "a tensor with backward hooks");
    if (arguments.size() == required + 1) {
      const Item& metadata = arguments[required];
      expect(
          metadata.kind == Item::Kind::Value &&
              (metadata.value.isNone() || (metadata.value.isGenericDict() && metadata.value.toGenericDict().empty())),
          "a tensor with metadata");
    }
    std::optional<c10::ScalarType> dtype = arguments[0].dtype;
    if (v3) {
      const Item& named = arguments[6];
      expect(named.kind == Item::Kind::Global && named.global == Global::Dtype, "a _rebuild_tensor_v3 without a dtype");
      expect(!dtype || dtype == named.dtype, "a tensor whose dtype differs from its storage's");
      dtype = named.dtype;
    }
    expect(dtype.has_value(), "a _rebuild_tensor_v2 over an untyped storage");

    // The elements it reaches must lie in its storage (an empty tensor
    // reaches none).
    const c10::Storage storage = arguments[0].value.toStorage();
    const auto offset = static_cast<uint64_t>(arguments[1].value.toInt());
    if (std::find(sizes.begin(), sizes.end(), 0) == sizes.end()) {
      const uint64_t capacity = storage.nbytes() / c10::elementSize(*dtype);
      expect(offset < capacity, "a tensor that starts past the end of its storage");
      uint64_t last = offset;
      for (size_t i = 0; i < sizes.size(); ++i) {
        const auto extent = static_cast<uint64_t>(sizes[i] - 1);
        const auto stride = static_cast<uint64_t>(strides[i]);
        expect(stride == 0 || extent <= (capacity - 1 - last) / stride, "a tensor larger than its storage");
        last += extent * stride;
      }
    }

    at::Tensor tensor = at::empty({0}, at::TensorOptions().dtype(*dtype));
    tensor.set_(storage, static_cast<int64_t>(offset), sizes, strides);
    tensor.set_requires_grad(arguments[4].value.toBool());
    return tensor;
  }

  void build(const Item& state) {
    expect(!stack_.empty(), "BUILD on an empty stack");
    const c10::IValue target = value_of(stack_.back(), "the target of BUILD");
    const c10::IValue attributes = value_of(state, "the state of BUILD");
    expect(target.isGenericDict(), "BUILD on a value that is no OrderedDict");
    Shape& shape = shape_of(target);
    expect(shape.ordered_dict_attributes.has_value(), "BUILD on a value that is no OrderedDict");
    expect(!shape.frozen, "a container changed after it was put into another");
    expect(attributes.isGenericDict(), "BUILD of an OrderedDict with a state that is no dict");
    // Walks meet the attributes as a dict inside the OrderedDict.
    Shape dict;
    for (const auto& entry : attributes.toGenericDict()) {
      expect(entry.key().isString(), "an OrderedDict attribute whose name is no str");
      adopt(dict, target, entry.value());
      shape.ordered_dict_attributes->insert_or_assign(entry.key(), entry.value());
    }
    shape.depth = std::max(shape.depth, dict.depth + 1);
    shape.nodes += dict.nodes;
    expect(shape.depth <= kMaxDepth, "values nested deeper than " + std::to_string(kMaxDepth) + " levels");
    expect(shape.nodes <= node_limit_, "shared references expand the value too far");
  }

  std::string_view pickle_;
  size_t position_ = 0;
  const LoadStorage& load_storage_;
  const FailUnpickling& fail_;
  const uint64_t node_limit_;
  std::vector<Item> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Item> memo_;
  std::unordered_map<const void*, Shape> shapes_;
  std::vector<c10::IValue> made_;
  std::unordered_map<std::string, c10::Storage> storages_;
};

} // namespace

c10::IValue unpickle_state(std::string_view pickle, const LoadStorage& load_storage, const FailUnpickling& fail) {
  return Unpickler(pickle, load_storage, fail).run();
}

} // namespace torch_ext::detail
