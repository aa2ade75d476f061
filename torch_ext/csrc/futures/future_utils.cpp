#include <torch_ext/future_utils.h>

#include <algorithm>
#include <atomic>
#include <utility>
#include <vector>

#include <c10/util/Exception.h>
#include <c10/util/Logging.h>

namespace torch_ext {
namespace {

using c10::ivalue::Future;
using Callback = std::function<void(Future&)>;

std::atomic<ErrorFromValue> error_from_value_hook{nullptr};

struct Deferred {
  FuturePtr future;
  Callback callback;
};

// c10 runs callbacks inline, so completing the head of a chain of futures
// linked by callbacks recurses once per link, and so does destroying the head
// of a chain that never completed (each callback owns the next future). Both
// are bounded per thread. Safe callbacks nest inline as c10's do up to
// kMaxInlineDepth, so that a future completed inside a callback has run its
// callbacks when that completion returns; deeper ones are queued and run by
// the callback at that depth, in the depth-first order c10 would use. Nested
// destructions are queued and done by the outermost one.
//
// The flags that every callback reads are trivially destructible, so that
// reading them is a bare TLS access; the queues, which need a destructor and
// hence an initialization guard, are touched only when something nests.
constexpr int kMaxInlineDepth = 16;

struct ThreadState {
  int depth = 0; // safe callbacks running inline on this thread
  bool draining = false; // the one at kMaxInlineDepth runs the queue
  bool destroying = false;
  bool has_deferred = false;
  bool has_to_destroy = false;
};
thread_local ThreadState t_state;

struct ThreadQueues {
  std::vector<Deferred> deferred;
  std::vector<Callback> to_destroy;
};
thread_local ThreadQueues t_queues;

template <typename F>
void invoke_logged(F& fn, Future& future) noexcept {
  try {
    fn(future);
  } catch (const c10::Error& e) {
    LOG(ERROR) << "torch_ext::on_complete: a callback threw: "
               << e.what_without_backtrace();
  } catch (const std::exception& e) {
    LOG(ERROR) << "torch_ext::on_complete: a callback threw: " << e.what();
  } catch (...) {
    LOG(ERROR) << "torch_ext::on_complete: a callback threw an exception "
                  "that is not a std::exception";
  }
}

template <typename F>
void destroy_callback(ThreadState& state, F&& fn) noexcept {
  if (state.destroying) {
    t_queues.to_destroy.emplace_back(std::forward<F>(fn));
    state.has_to_destroy = true;
    return;
  }
  state.destroying = true;
  { std::decay_t<F> dying = std::forward<F>(fn); }
  if (state.has_to_destroy) {
    std::vector<Callback>& to_destroy = t_queues.to_destroy;
    while (!to_destroy.empty()) {
      Callback dying = std::move(to_destroy.back());
      to_destroy.pop_back();
    }
    state.has_to_destroy = false;
  }
  state.destroying = false;
}

// addCallback's uses_future: whether c10 sets up the future's device and
// streams around the callback. A CPU future has none, and the guards that
// would set them up do nothing but cost as much as the rest of a wrap.
bool uses_streams(const Future& future) {
  return !future.devices().empty();
}

void run_deferred(ThreadState& state) noexcept {
  if (!state.has_deferred) {
    return;
  }
  std::vector<Deferred>& deferred = t_queues.deferred;
  size_t first_new = 0; // where the callback that ran last began queueing
  for (;;) {
    std::reverse(deferred.begin() + first_new, deferred.end());
    if (deferred.empty()) {
      state.has_deferred = false;
      return;
    }
    Deferred next = std::move(deferred.back());
    deferred.pop_back();
    first_new = deferred.size();
    // The future is complete, so addCallback runs this inline, inside the
    // device and stream guards c10 sets up for its callbacks.
    next.future->addCallback(
        [&next](Future& future) { invoke_logged(next.callback, future); },
        uses_streams(*next.future));
    destroy_callback(state, std::move(next.callback));
  }
}

// The callable c10 stores: runs `fn` once through the per-thread queue and
// hands its destruction to destroy_callback.
template <typename F>
class SafeCallback {
 public:
  // addCallback runs the very object it is given if the future is already
  // complete, and stores a move of it otherwise: only that object is marked,
  // so that it runs at once even where it would be queued, and the result of
  // wrap_future is complete when it returns.
  static SafeCallback registering(F fn) {
    return SafeCallback(std::move(fn), /*registering=*/true);
  }

  SafeCallback(const SafeCallback& other) // std::function requires it
      : fn_(other.fn_), alive_(other.alive_) {}
  SafeCallback(SafeCallback&& other) noexcept
      : fn_(std::move(other.fn_)), alive_(std::exchange(other.alive_, false)) {}
  SafeCallback& operator=(const SafeCallback&) = delete;
  SafeCallback& operator=(SafeCallback&&) = delete;
  ~SafeCallback() {
    if (alive_) {
      release(t_state);
    }
  }

  void operator()(Future& future) noexcept {
    if (!alive_) {
      return;
    }
    ThreadState& state = t_state;
    if (state.depth < kMaxInlineDepth || registering_) {
      ++state.depth;
      invoke_logged(fn_, future);
      --state.depth;
    } else if (state.draining) {
      defer(state, future);
    } else {
      state.draining = true;
      invoke_logged(fn_, future);
      run_deferred(state);
      state.draining = false;
    }
    release(state);
  }

 private:
  SafeCallback(F fn, bool registering)
      : fn_(std::move(fn)), registering_(registering) {}

  void defer(ThreadState& state, Future& future) noexcept {
    try {
      t_queues.deferred.push_back(
          {FuturePtr::unsafe_reclaim_from_nonowning(&future),
           Callback(std::move(fn_))});
      state.has_deferred = true;
    } catch (...) {
      LOG(ERROR) << "torch_ext::on_complete: out of memory queueing a "
                    "callback; it is dropped";
    }
  }

  void release(ThreadState& state) noexcept {
    alive_ = false;
    destroy_callback(state, std::move(fn_));
  }

  F fn_;
  bool alive_ = true;
  bool registering_ = false;
};

template <typename F>
void add_safe_callback(const FuturePtr& future, F fn) {
  future->addCallback(
      SafeCallback<F>::registering(std::move(fn)), uses_streams(*future));
}

std::exception_ptr error_of(Future& source) {
  if (std::exception_ptr error = source.exception_ptr()) {
    return error;
  }
  ErrorFromValue hook = error_from_value_hook.load(std::memory_order_acquire);
  if (hook != nullptr && source.constValue().isPyObject()) {
    return hook(source.constValue());
  }
  return nullptr;
}

void complete_from(Future& wrapped, Future& source) {
  // Someone completed the wrapped future by hand: their result stands.
  if (wrapped.completed()) {
    return;
  }
  if (std::exception_ptr error = error_of(source)) {
    wrapped.setErrorIfNeeded(std::move(error));
    return;
  }
  try {
    // Passing the source's storages keeps the stream synchronization of a
    // device future: a bare None has no storages to record events for. A CPU
    // future has none, and reading them costs a lock.
    if (wrapped.devices().empty()) {
      wrapped.markCompleted(c10::IValue());
    } else {
      wrapped.markCompleted(c10::IValue(), source.storages());
    }
  } catch (const c10::Error&) {
    if (!wrapped.completed()) {
      throw;
    } // else lost a race with a completion by hand
  }
}

struct CompleteWrapped {
  FuturePtr wrapped;
  void operator()(Future& source) const {
    complete_from(*wrapped, source);
  }
};

} // namespace
} // namespace torch_ext


namespace torch_ext {

FuturePtr wrap_future(const c10::IValue& original_result) {
  if (!original_result.isFuture()) {
    auto done = c10::make_intrusive<Future>(c10::NoneType::get());
    done->markCompleted();
    return done;
  }
  return wrap_future(original_result.toFuture());
}

FuturePtr wrap_future(const FuturePtr& source) {
  TORCH_CHECK(
      source,
      "torch_ext::wrap_future expected a future, got a null Future pointer");
  FuturePtr wrapped = source->createInstance(c10::NoneType::get());
  // A complete CPU source needs no callback: no streams to set up for it.
  if (source->completed() && source->devices().empty()) {
    complete_from(*wrapped, *source);
  } else {
    add_safe_callback(source, CompleteWrapped{wrapped});
  }
  return wrapped;
}

void on_complete(const FuturePtr& future, Callback callback) {
  TORCH_CHECK(
      future, "torch_ext::on_complete expected a future, got a null pointer");
  TORCH_CHECK(
      callback,
      "torch_ext::on_complete expected a callback, got an empty std::function");
  add_safe_callback(future, std::move(callback));
}

void set_error_from_value_hook(ErrorFromValue hook) {
  error_from_value_hook.store(hook, std::memory_order_release);
}

} // namespace torch_ext
