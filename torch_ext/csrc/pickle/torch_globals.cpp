#include "torch_globals.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

#include <torch_ext/checkpoint_values.h>

#include "torch_ext/csrc/state/state_value.h"

#include "dtypes.h"

namespace torch_ext::detail {
namespace {

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

struct TorchGlobal final : PickleObject {
  TorchGlobal(Global global, std::string name, std::optional<c10::ScalarType> dtype)
      : global(global), name(std::move(name)), dtype(dtype) {}
  Global global;
  std::string name; // `module.name`
  std::optional<c10::ScalarType> dtype; // StorageClass, Dtype
};

// What a persistent id names: the storage of record `data/<key>`, typed by
// its class (or untyped).
struct StorageObject final : PickleObject {
  StorageObject(std::string key, c10::Storage storage, std::optional<c10::ScalarType> dtype)
      : key(std::move(key)), storage(std::move(storage)), dtype(dtype) {}
  std::string key;
  c10::Storage storage;
  std::optional<c10::ScalarType> dtype;
};

// Runs `construct`, which builds a tensor; what torch refuses of it fails
// the load naming the file, as every other error does.
template <typename Construct>
void build_tensor(const PickleContext& context, const std::string& what, Construct&& construct) {
  try {
    construct();
  } catch (const c10::Error& error) {
    context.malformed(what + ", which torch refuses: " + error.what_without_backtrace());
  }
}

std::string describe_tensor(c10::ScalarType dtype, bool requires_grad) {
  return std::string("a tensor of dtype ") + c10::toString(dtype) + (requires_grad ? " with requires_grad=True" : "");
}

bool is_value(const PickleItem& item, bool (c10::IValue::*test)() const) {
  return item.is_value() && (item.value.*test)();
}

const TorchGlobal* global_of(const PickleItem& item, Global global) {
  const auto* named = item.as<TorchGlobal>();
  return named != nullptr && named->global == global ? named : nullptr;
}

std::vector<int64_t> int_tuple(const PickleContext& context, const PickleItem& item, const char* what) {
  if (!is_value(item, &c10::IValue::isTuple)) {
    context.malformed(std::string("a tensor whose ") + what + " is no tuple");
  }
  std::vector<int64_t> values;
  for (const c10::IValue& value : item.value.toTupleRef().elements()) {
    if (!value.isInt() || value.toInt() < 0) {
      context.malformed(std::string("a tensor whose ") + what + " holds no int >= 0");
    }
    values.push_back(value.toInt());
  }
  return values;
}

} // namespace

TorchGlobals::TorchGlobals(LoadStorage load_storage) : load_storage_(std::move(load_storage)) {}

std::shared_ptr<const PickleObject> TorchGlobals::global(
    const PickleContext& context,
    const std::string& module,
    const std::string& name) {
  const auto make = [&](Global global, std::optional<c10::ScalarType> dtype = std::nullopt) {
    return std::make_shared<const TorchGlobal>(global, module + "." + name, dtype);
  };
  if (module == "collections" && name == "OrderedDict") {
    return make(Global::OrderedDict);
  }
  if (module == "torch" && name == "Size") {
    return make(Global::Size);
  }
  if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
    return make(Global::RebuildTensorV2);
  }
  if (module == "torch._utils" && name == "_rebuild_tensor_v3") {
    return make(Global::RebuildTensorV3);
  }
  if (module == "torch._utils" && name == "_rebuild_parameter") {
    return make(Global::RebuildParameter);
  }
  if (module == "torch.storage" && name == "UntypedStorage") {
    return make(Global::StorageClass);
  }
  if (module == "torch") {
    if (const auto dtype = dtype_from_storage_class(name)) {
      return make(Global::StorageClass, dtype);
    }
    if (const auto dtype = dtype_from_python_name(name)) {
      return make(Global::Dtype, dtype);
    }
  }
  context.fail(
      "its pickle names the global '" + module + "." + name +
      "', which a checkpoint may not hold; loading runs no code, and allows only torch's tensor rebuild "
      "functions, storage classes and dtypes, collections.OrderedDict and torch.Size");
}

Made TorchGlobals::reduce(const PickleContext& context, const PickleObject& callable, const std::vector<PickleItem>& arguments) {
  const auto* named = dynamic_cast<const TorchGlobal*>(&callable);
  context.expect(named != nullptr, "REDUCE of a value that is no function or class");
  switch (named->global) {
    case Global::OrderedDict: {
      context.expect(arguments.empty(), "OrderedDict() with arguments");
      c10::impl::GenericDict dict(c10::AnyType::get(), c10::AnyType::get());
      // BUILD fills the attributes in place.
      mark_ordered_dict(dict, c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get()));
      return Made{PickleItem{std::move(dict), nullptr}, PickleShape{1, 1}};
    }
    case Global::Size: {
      context.expect(
          arguments.size() == 1 && is_value(arguments[0], &c10::IValue::isTuple), "torch.Size() without a tuple");
      const auto& sizes = arguments[0].value.toTupleRef().elements();
      context.expect(
          std::all_of(sizes.begin(), sizes.end(), [](const c10::IValue& size) { return size.isInt(); }),
          "torch.Size() of a value that is no int");
      c10::IValue tuple(c10::ivalue::Tuple::create(std::vector<c10::IValue>(sizes.begin(), sizes.end())));
      mark_size(tuple);
      return Made{PickleItem{std::move(tuple), nullptr}, PickleShape{1, 1 + sizes.size()}};
    }
    case Global::RebuildTensorV2:
    case Global::RebuildTensorV3:
      return rebuild_tensor(context, named->global == Global::RebuildTensorV3, arguments);
    case Global::RebuildParameter: {
      // (data, requires_grad, backward_hooks): a Parameter; we keep its data.
      context.expect(
          arguments.size() == 3 && is_value(arguments[0], &c10::IValue::isTensor) &&
              is_value(arguments[1], &c10::IValue::isBool),
          "a malformed _rebuild_parameter");
      const bool requires_grad = arguments[1].value.toBool();
      at::Tensor data = arguments[0].value.toTensor().detach();
      build_tensor(context, "a Parameter of " + describe_tensor(data.scalar_type(), requires_grad), [&] {
        data.set_requires_grad(requires_grad);
      });
      return Made{PickleItem{std::move(data), nullptr}, PickleShape{}};
    }
    case Global::StorageClass:
    case Global::Dtype:
      break;
  }
  context.expect(false, "a storage class or dtype called as a function");
  return {};
}

// (storage, storage_offset, size, stride, requires_grad, backward_hooks
//  [, dtype: v3 only][, metadata])
Made TorchGlobals::rebuild_tensor(const PickleContext& context, bool v3, const std::vector<PickleItem>& arguments) {
  const size_t required = v3 ? 7 : 6;
  context.expect(arguments.size() == required || arguments.size() == required + 1, "a tensor with the wrong arguments");
  const auto* storage_object = arguments[0].as<StorageObject>();
  context.expect(storage_object != nullptr, "a tensor without a storage");
  context.expect(
      is_value(arguments[1], &c10::IValue::isInt) && arguments[1].value.toInt() >= 0,
      "a tensor offset that is no int >= 0");
  const std::vector<int64_t> sizes = int_tuple(context, arguments[2], "size");
  const std::vector<int64_t> strides = int_tuple(context, arguments[3], "stride");
  context.expect(sizes.size() == strides.size(), "a tensor whose size and stride differ in length");
  context.expect(is_value(arguments[4], &c10::IValue::isBool), "a tensor whose requires_grad is no bool");
  context.expect(
      is_value(arguments[5], &c10::IValue::isGenericDict) && arguments[5].value.toGenericDict().empty(),
      "a tensor with backward hooks");
  if (arguments.size() == required + 1) {
    const PickleItem& metadata = arguments[required];
    context.expect(
        metadata.is_value() &&
            (metadata.value.isNone() || (metadata.value.isGenericDict() && metadata.value.toGenericDict().empty())),
        "a tensor with metadata");
  }
  std::optional<c10::ScalarType> dtype = storage_object->dtype;
  if (v3) {
    const TorchGlobal* named = global_of(arguments[6], Global::Dtype);
    context.expect(named != nullptr, "a _rebuild_tensor_v3 without a dtype");
    context.expect(!dtype || dtype == named->dtype, "a tensor whose dtype differs from its storage's");
    dtype = named->dtype;
  }
  context.expect(dtype.has_value(), "a _rebuild_tensor_v2 over an untyped storage");
  // torch.save views a storage with one dtype; another would read its bytes
  // as something else.
  const auto [first_dtype, first_use] = tensor_dtypes_.try_emplace(storage_object->key, *dtype);
  if (!first_use && first_dtype->second != *dtype) {
    context.malformed(
        "storage '" + storage_object->key + "' is viewed as " + c10::toString(first_dtype->second) + " and as " +
        c10::toString(*dtype) + "; torch.save gives a storage one dtype");
  }
  // The product of the sizes, as c10 computes it (a size of 0 after an
  // overflow does not undo it).
  uint64_t numel = 1;
  bool overflows = false;
  for (const int64_t size : sizes) {
    overflows |= c10::mul_overflows(numel, static_cast<uint64_t>(size), &numel);
  }
  context.expect(
      !overflows && numel <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
      "a tensor of more than 2**63 - 1 elements");

  // The elements it reaches must lie in its storage (an empty tensor
  // reaches none).
  const c10::Storage& storage = storage_object->storage;
  const auto offset = static_cast<uint64_t>(arguments[1].value.toInt());
  if (std::find(sizes.begin(), sizes.end(), 0) == sizes.end()) {
    const uint64_t capacity = storage.nbytes() / c10::elementSize(*dtype);
    context.expect(offset < capacity, "a tensor that starts past the end of its storage");
    uint64_t last = offset;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const auto extent = static_cast<uint64_t>(sizes[i] - 1);
      const auto stride = static_cast<uint64_t>(strides[i]);
      context.expect(stride == 0 || extent <= (capacity - 1 - last) / stride, "a tensor larger than its storage");
      last += extent * stride;
    }
  }

  const bool requires_grad = arguments[4].value.toBool();
  at::Tensor tensor;
  build_tensor(context, describe_tensor(*dtype, requires_grad), [&] {
    tensor = at::empty({0}, at::TensorOptions().dtype(*dtype));
    tensor.set_(storage, static_cast<int64_t>(offset), sizes, strides);
    tensor.set_requires_grad(requires_grad);
  });
  return Made{PickleItem{std::move(tensor), nullptr}, PickleShape{}};
}

void TorchGlobals::build(const PickleContext& context, const PickleItem& target, const PickleItem& state) {
  context.expect(target.is_value(), "the target of BUILD is a global, what a persistent id names or a tuple of arguments, not a value");
  context.expect(state.is_value(), "the state of BUILD is a global, what a persistent id names or a tuple of arguments, not a value");
  std::optional<c10::impl::GenericDict> attributes = ordered_dict_attributes(target.value);
  context.expect(attributes.has_value(), "BUILD on a value that is no OrderedDict");
  context.expect(state.value.isGenericDict(), "BUILD of an OrderedDict with a state that is no dict");
  for (const auto& entry : state.value.toGenericDict()) {
    context.expect(entry.key().isString(), "an OrderedDict attribute whose name is no str");
    attributes->insert_or_assign(entry.key(), entry.value());
  }
}

// ('storage', <storage class>, key, location, numel). The location is not
// read: loading maps every storage onto the CPU.
Made TorchGlobals::persistent_load(const PickleContext& context, const PickleItem& id) {
  const auto* tuple = id.as<PickleTuple>();
  context.expect(tuple != nullptr && tuple->items.size() == 5, "a persistent id that is not a storage");
  const std::vector<PickleItem>& fields = tuple->items;
  const TorchGlobal* storage_class = global_of(fields[1], Global::StorageClass);
  context.expect(
      is_value(fields[0], &c10::IValue::isString) && fields[0].value.toStringRef() == "storage" &&
          storage_class != nullptr && is_value(fields[2], &c10::IValue::isString) &&
          is_value(fields[4], &c10::IValue::isInt),
      "a malformed storage id");
  const std::string& key = fields[2].value.toStringRef();
  auto [cached, added] = storages_.try_emplace(key);
  if (added) {
    cached->second = {load_storage_(key), storage_class->name};
  }
  // torch.load types a storage by its first use: another class for it is
  // read one way by torch.load and another by a reader that follows it.
  if (cached->second.storage_class != storage_class->name) {
    context.malformed(
        "storage '" + key + "' is used as " + cached->second.storage_class + " and as " + storage_class->name +
        "; torch.save gives a storage one class, and torch.load would read it as its first use's");
  }
  const c10::Storage& storage = cached->second.storage;
  const std::optional<c10::ScalarType> dtype = storage_class->dtype;
  const uint64_t item_size = dtype ? c10::elementSize(*dtype) : 1;
  const int64_t numel = fields[4].value.toInt();
  if (numel < 0 || storage.nbytes() % item_size != 0 || static_cast<uint64_t>(numel) != storage.nbytes() / item_size) {
    context.malformed(
        "storage '" + key + "' claims " + std::to_string(numel) + " elements of " + std::to_string(item_size) +
        " bytes; its record holds " + std::to_string(storage.nbytes()) + " bytes");
  }
  return Made{PickleItem{c10::IValue(), std::make_shared<const StorageObject>(key, storage, dtype)}, PickleShape{}};
}

c10::IValue TorchGlobals::dict_key(const PickleContext& context, const c10::IValue& key) {
  if (!is_valid_key(key)) {
    context.malformed(std::string("a dict key of type ") + key.tagKind() + "; keys are str, int, float or bool");
  }
  return key;
}

std::optional<c10::ScalarType> dtype_of(const PickleItem& item) {
  const TorchGlobal* named = global_of(item, Global::Dtype);
  return named != nullptr ? named->dtype : std::nullopt;
}

c10::IValue unpickle_state(std::string_view pickle, const LoadStorage& load_storage, const FailUnpickling& fail) {
  TorchGlobals globals(load_storage);
  return unpickle(pickle, globals, fail);
}

} // namespace torch_ext::detail
