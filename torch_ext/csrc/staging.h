#pragma once

#include <ATen/core/ivalue.h>

#include <vector>

namespace torch_ext::detail {

// A deep copy of `state_dict` whose tensors are contiguous CPU tensors that
// share nothing with the caller's, copied by `threads` threads (the calling
// one and threads - 1 more). Dicts need string keys; lists, ints, floats,
// bools, strings and None are taken as they are. Anything else throws,
// naming its key.
//
// `buffers` holds the tensors of the previous copy, in the same order. One
// that nothing else references any more and has the shape and dtype needed
// is copied into instead of new memory, as upstream's stager reuses its
// buffers: a checkpoint of the same model then allocates and page-faults
// nothing. On return `buffers` holds this copy's tensors.
c10::IValue stage_state_dict(
    const c10::IValue& state_dict,
    int threads,
    std::vector<at::Tensor>& buffers);

} // namespace torch_ext::detail
