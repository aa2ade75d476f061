#include "state_value.h"

#include <algorithm>
#include <sstream>
#include <utility>

#include <c10/util/Exception.h>

namespace torch_ext::detail {
namespace {

constexpr const char* kWhatACheckpointHolds =
    "a checkpoint holds dense tensors, dicts with str, int, float or bool "
    "keys, lists, tuples, torch.Size, None, bool, int, float and str";

std::string describe_unsupported(const c10::IValue& value) {
  if (value.isTensor()) {
    const at::Tensor& tensor = value.toTensor();
    if (!tensor.defined()) {
      return "an undefined tensor";
    }
    std::ostringstream what;
    what << "a tensor of layout " << tensor.layout() << ", dtype " << tensor.scalar_type()
         << " on " << tensor.device();
    return what.str();
  }
  return std::string("a ") + value.tagKind();
}

} // namespace

void throw_unsupported(const KeyPath& path, const std::string& what) {
  TORCH_CHECK_TYPE(false, path.describe(), " is ", what, "; ", kWhatACheckpointHolds);
}

void throw_shards_unsupported(const KeyPath& path) {
  throw_unsupported(
      path,
      "a LocalShards (a rank's parts of a larger tensor), which only a sharded DCP save (dcp::save_sharded) "
      "holds");
}

ValueKind kind_at(const c10::IValue& value, const KeyPath& path) {
  const std::optional<ValueKind> kind = value_kind(value);
  if (!kind) {
    throw_unsupported(path, describe_unsupported(value));
  }
  if (is_container(*kind)) {
    check_depth(path);
  }
  return *kind;
}

void check_depth(const KeyPath& path) {
  if (path.depth() >= kMaxDepth) {
    throw_unsupported(path, "nested deeper than " + std::to_string(kMaxDepth) + " levels (or holds itself)");
  }
}

void check_key(const c10::IValue& key, const KeyPath& path) {
  if (!is_valid_key(key)) {
    throw_invalid_key(path, key.tagKind());
  }
}

void throw_invalid_key(const KeyPath& path, const std::string& key_type) {
  TORCH_CHECK_TYPE(
      false, path.describe(), " is a dict with a key of type ", key_type, "; ", kWhatACheckpointHolds);
}

bool is_container(ValueKind kind) {
  switch (kind) {
    case ValueKind::List:
    case ValueKind::Tuple:
    case ValueKind::Size:
    case ValueKind::Dict:
    case ValueKind::OrderedDict:
      return true;
    default:
      return false;
  }
}

void settle_key_type(c10::impl::GenericDict& dict) {
  const bool string_keys =
      std::all_of(dict.begin(), dict.end(), [](const auto& entry) { return entry.key().isString(); });
  dict.unsafeSetKeyType(string_keys ? c10::TypePtr(c10::StringType::get()) : c10::TypePtr(c10::AnyType::get()));
}

void IValueBuilder::leaf(const c10::IValue& value, ValueKind /*kind*/) {
  add(value);
}

void IValueBuilder::tensor(const at::Tensor& tensor) {
  add(tensor);
}

void IValueBuilder::begin(const c10::IValue& /*container*/, ValueKind kind) {
  begin(kind);
}

void IValueBuilder::begin(ValueKind kind) {
  frames_.emplace_back();
  frames_.back().kind = kind;
}

void IValueBuilder::key(const c10::IValue& key) {
  frames_.back().pending_key = key;
}

void IValueBuilder::attributes(const c10::impl::GenericDict& /*attributes*/) {
  frames_.back().reading_attributes = true;
}

void IValueBuilder::end(const c10::IValue& /*container*/, ValueKind kind) {
  end(kind);
}

void IValueBuilder::end(ValueKind kind) {
  Frame frame = std::move(frames_.back());
  frames_.pop_back();
  TORCH_INTERNAL_ASSERT(frame.kind == kind);
  switch (kind) {
    case ValueKind::List: {
      c10::impl::GenericList list(c10::AnyType::get());
      list.reserve(frame.items.size());
      for (c10::IValue& item : frame.items) {
        list.push_back(std::move(item));
      }
      add(std::move(list));
      return;
    }
    case ValueKind::Tuple:
    case ValueKind::Size: {
      c10::IValue tuple(c10::ivalue::Tuple::create(std::move(frame.items)));
      if (kind == ValueKind::Size) {
        mark_size(tuple);
      }
      add(std::move(tuple));
      return;
    }
    case ValueKind::Dict:
    case ValueKind::OrderedDict: {
      settle_key_type(frame.dict);
      if (kind == ValueKind::OrderedDict) {
        mark_ordered_dict(frame.dict, std::move(frame.attributes));
      }
      add(std::move(frame.dict));
      return;
    }
    default:
      TORCH_INTERNAL_ASSERT(false, "IValueBuilder::end of a leaf");
  }
}

void IValueBuilder::add(c10::IValue value) {
  if (frames_.empty()) {
    result_ = std::move(value);
    return;
  }
  Frame& frame = frames_.back();
  if (frame.reading_attributes) {
    frame.attributes = value.toGenericDict();
    frame.reading_attributes = false;
  } else if (frame.kind == ValueKind::Dict || frame.kind == ValueKind::OrderedDict) {
    frame.dict.insert_or_assign(std::move(frame.pending_key), std::move(value));
  } else {
    frame.items.push_back(std::move(value));
  }
}

c10::IValue IValueBuilder::take() {
  TORCH_INTERNAL_ASSERT(frames_.empty(), "IValueBuilder::take before the outermost end()");
  return std::move(result_);
}

} // namespace torch_ext::detail
