#pragma once

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <torch_ext/export.h>

namespace torch_ext {

// The values a checkpoint holds: what torch.load(weights_only=True) accepts
// of a state dict, as c10::IValues. Saving, staging, loading and the Python
// conversion all classify values with value_kind(), so this is the one place
// that says what a checkpoint can hold.
enum class ValueKind : uint8_t {
  None,
  Bool,
  Int,
  Float,
  String,
  Tensor, // dense (strided), any dtype torch.save writes
  List,
  Tuple,
  Size, // a tuple of ints marked as torch.Size (make_size)
  Dict, // keys: str, int, float or bool; in insertion order
  OrderedDict, // a dict marked as collections.OrderedDict (mark_ordered_dict)
  LocalShards, // a rank's parts of a larger tensor (<torch_ext/local_shards.h>):
               // only sharded DCP saves hold it, every other save refuses it
};

// The kind of `value`, or nullopt if a checkpoint cannot hold it (another
// custom class, a future, a complex scalar, a sparse tensor, ...).
TORCH_EXT_API std::optional<ValueKind> value_kind(const c10::IValue& value);

// Whether `key` may key a dict of a checkpoint: str, int, float or bool.
TORCH_EXT_API bool is_valid_key(const c10::IValue& key);

// Marks `dict` as a Python collections.OrderedDict whose __dict__ holds
// `attributes` (Module.state_dict() keeps `_metadata` there; an empty dict
// for none). A checkpoint written from it holds an OrderedDict with those
// attributes, which Python reads back as such; reading an OrderedDict from a
// file marks the dict it gives. The mark belongs to the dict object (c10
// dicts are shared by reference): copies made with Dict::copy() are plain
// dicts. Thread-safe.
TORCH_EXT_API void mark_ordered_dict(
    const c10::impl::GenericDict& dict,
    c10::impl::GenericDict attributes);

// The attributes of a dict marked as an OrderedDict, or nullopt for any
// other value.
TORCH_EXT_API std::optional<c10::impl::GenericDict> ordered_dict_attributes(
    const c10::IValue& value);

// A tuple of ints marked as torch.Size: Python reads it back as torch.Size.
TORCH_EXT_API c10::IValue make_size(const std::vector<int64_t>& sizes);

} // namespace torch_ext
