#pragma once

#include <ATen/core/ivalue.h>

#include <exception>
#include <functional>

#include <torch_ext/export.h>

namespace torch_ext {

using FuturePtr = c10::intrusive_ptr<c10::ivalue::Future>;

// Returns a future of NoneType that completes when `original_result` does.
//
// - Not a future: the result is already completed with None.
// - A future: the result has the source's devices and completes with None when
//   the source completes with a value, or with the source's very exception_ptr
//   when it fails. It is completed on the thread that completes the source,
//   during that completion; if the source is already complete, the result is
//   complete before this returns.
//
// The result keeps no reference to the source or its value. If someone else
// completes the result first, the source's completion leaves it as it is.
// Chains of any length complete and are destroyed in bounded stack.
//
//   auto staged = stage(state_dict);              // FuturePtr, completes later
//   auto done = torch_ext::wrap_future(staged);   // completes with None
//   done->waitAndThrow();
TORCH_EXT_API FuturePtr wrap_future(const c10::IValue& original_result);

// The same for a future held as a FuturePtr, without the cost of an IValue.
TORCH_EXT_API FuturePtr wrap_future(const FuturePtr& original_result);

// `future->addCallback(callback)`, made safe: `callback(*future)` runs exactly
// once, when the future completes with a value or an error, on the completing
// thread (inline if it is already complete). Whatever the callback throws is
// logged with its message and never escapes into markCompleted, setError or
// addCallback, nor stops the future's other callbacks. Such callbacks nest
// inline as c10's do up to 16 deep on a thread; deeper ones are queued and
// run on the same thread, in the order c10 would use, when the callback at
// depth 16 returns, so that chains need no stack per link.
//
//   torch_ext::on_complete(fut, [](c10::ivalue::Future& f) {
//     if (f.hasError()) report(f.exception_ptr());
//   });
TORCH_EXT_API void on_complete(
    const FuturePtr& future,
    std::function<void(c10::ivalue::Future&)> callback);

// Some producers record a failure as a value: torch.futures.Future's
// set_exception stores the Python exception object as the future's result.
// A hook set here (the Python module sets one) turns such a value into the
// error that wrap_future forwards; it returns nullptr for ordinary values. It
// is consulted only for values that hold a Python object.
using ErrorFromValue = std::exception_ptr (*)(const c10::IValue& value);
TORCH_EXT_API void set_error_from_value_hook(ErrorFromValue hook);

} // namespace torch_ext
