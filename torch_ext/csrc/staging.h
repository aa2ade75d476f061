#pragma once

#include <ATen/core/ivalue.h>

namespace torch_ext::detail {

// A deep copy of `state_dict` whose tensors are fresh contiguous CPU tensors
// that share nothing with the caller's, copied by `threads` threads (the
// calling one and threads - 1 more). Dicts need string keys; lists, ints,
// floats, bools, strings and None are taken as they are. Anything else
// throws, naming its key.
c10::IValue stage_state_dict(const c10::IValue& state_dict, int threads);

} // namespace torch_ext::detail
