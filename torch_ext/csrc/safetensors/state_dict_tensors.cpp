// What a safetensors file holds of a state dict (safetensors_tensors): the
// one place that decides it, for files and folders alike.
#include <torch_ext/safetensors.h>

#include <algorithm>
#include <tuple>

#include <c10/util/Exception.h>

#include <torch_ext/checkpoint_values.h>

#include "torch_ext/csrc/state/state_value.h"

#include "dtypes.h"

namespace torch_ext {
namespace {

constexpr const char* kWhatSafetensorsHolds =
    "a safetensors file holds a flat dict of str keys to tensors, as safetensors.torch.save_file takes it";

const char* kind_name(ValueKind kind) {
  switch (kind) {
    case ValueKind::None:
      return "None";
    case ValueKind::Bool:
      return "a bool";
    case ValueKind::Int:
      return "an int";
    case ValueKind::Float:
      return "a float";
    case ValueKind::String:
      return "a str";
    case ValueKind::List:
      return "a list";
    case ValueKind::Tuple:
      return "a tuple";
    case ValueKind::Size:
      return "a torch.Size";
    case ValueKind::Tensor:
      return "a tensor";
    case ValueKind::LocalShards:
      return "a LocalShards (a rank's parts of a larger tensor)";
    default:
      return "a dict";
  }
}

// The bytes of its storage that a tensor's elements span, [first, last):
// by storage and offset, not address, so that the rule holds for a state
// whose storages have their sizes and no data yet (a save's plan).
struct Span {
  const c10::StorageImpl* storage;
  uint64_t first;
  uint64_t last;
  size_t entry;
};

Span span_of(const at::Tensor& tensor, size_t entry) {
  int64_t extent = 1;
  for (int64_t d = 0; d < tensor.dim(); ++d) {
    extent += (tensor.size(d) - 1) * tensor.stride(d);
  }
  const auto item = static_cast<uint64_t>(tensor.element_size());
  const uint64_t first = static_cast<uint64_t>(tensor.storage_offset()) * item;
  return {tensor.storage().unsafeGetStorageImpl(), first, first + static_cast<uint64_t>(extent) * item, entry};
}

} // namespace

std::vector<std::pair<SafetensorsEntry, at::Tensor>> safetensors_tensors(const c10::IValue& state_dict) {
  const std::optional<ValueKind> kind = value_kind(state_dict);
  TORCH_CHECK_TYPE(
      kind == ValueKind::Dict || kind == ValueKind::OrderedDict,
      kWhatSafetensorsHolds,
      "; the state_dict is ",
      kind ? kind_name(*kind) : state_dict.tagKind().c_str());
  std::vector<std::pair<SafetensorsEntry, at::Tensor>> tensors;
  detail::KeyPath path;
  for (const auto& item : state_dict.toGenericDict()) {
    TORCH_CHECK_TYPE(
        item.key().isString(),
        kWhatSafetensorsHolds,
        "; the state_dict has the key ",
        detail::key_text(item.key()),
        " of type ",
        item.key().tagKind());
    const std::string& name = item.key().toStringRef();
    path.push_key(name);
    // Refuses what no checkpoint holds (a sparse tensor, a custom class).
    const ValueKind value = detail::kind_at(item.value(), path);
    if (value != ValueKind::Tensor) {
      TORCH_CHECK_TYPE(
          false,
          kWhatSafetensorsHolds,
          "; state_dict ",
          path.describe(),
          " is ",
          kind_name(value),
          detail::is_container(value) ? " (flatten nested dicts into dotted keys, or save in torch.save's format)"
                                       : " (save it in torch.save's format, or as a str in the metadata)");
    }
    const at::Tensor& tensor = item.value().toTensor();
    TORCH_CHECK_TYPE(
        detail::safetensors_dtype(tensor.scalar_type()) != nullptr,
        "state_dict ",
        path.describe(),
        " is a ",
        c10::toString(tensor.scalar_type()),
        " tensor, which safetensors has no dtype for");
    TORCH_CHECK_VALUE(
        tensor.device().is_cpu(),
        "state_dict ",
        path.describe(),
        " is on ",
        tensor.device().str(),
        "; a safetensors file is written from CPU tensors");
    tensors.push_back({SafetensorsEntry{name, tensor.scalar_type(), tensor.sizes().vec()}, tensor});
    path.pop();
  }

  // Tensors whose memory overlaps cannot stay shared in the format.
  std::vector<Span> spans;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].second.numel() > 0) {
      spans.push_back(span_of(tensors[i].second, i));
    }
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return std::tie(a.storage, a.first, a.entry) < std::tie(b.storage, b.first, b.entry);
  });
  for (size_t i = 1, widest = 0; i < spans.size(); ++i) {
    if (spans[i].storage != spans[widest].storage) {
      widest = i;
      continue;
    }
    TORCH_CHECK_VALUE(
        spans[i].first >= spans[widest].last,
        "state_dict entries '",
        tensors[spans[widest].entry].first.name,
        "' and '",
        tensors[spans[i].entry].first.name,
        "' share memory, which a safetensors file cannot hold (safetensors.torch.save_file refuses it too): "
        "save one of them (a model ties tied weights again as it loads) or a clone of it");
    if (spans[i].last > spans[widest].last) {
      widest = i;
    }
  }
  return tensors;
}

} // namespace torch_ext
