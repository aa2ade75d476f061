#pragma once

#include <ATen/core/ivalue.h>

#include <functional>
#include <string>
#include <string_view>

namespace torch_ext::detail {

// The storage of record `data/<key>`, as loaded by the caller (mapped from
// the file, typically).
using LoadStorage = std::function<c10::Storage(const std::string& key)>;
// Throws: the error for a pickle that is malformed or names what a
// checkpoint may not hold.
using FailUnpickling = std::function<void(const std::string& what)>;

// Reads a pickle written by torch.save or pickle_state into a state value,
// running no code: like torch.load(weights_only=True), it knows a fixed set
// of globals (torch's tensor rebuild functions, storage classes and dtypes,
// collections.OrderedDict, torch.Size) and refuses any other, naming it.
// Whatever the bytes, it fails cleanly: every read is bounds-checked, and
// containers may not contain themselves or nest deeper than kMaxDepth, nor
// expand (through shared references) to more values than a multiple of the
// pickle's size, so every later walk of the value is bounded.
c10::IValue unpickle_state(std::string_view pickle, const LoadStorage& load_storage, const FailUnpickling& fail);

} // namespace torch_ext::detail
