// Chains of a million linked futures. c10 runs callbacks inline, so completing
// or dropping the head of a chain built with raw addCallback recurses once per
// link; chains built with wrap_future or on_complete must not.
#include <torch_ext/future_utils.h>

#include <time.h>

#include <exception>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_futures.h"
#include "test_threads.h"

namespace {

using c10::ivalue::Future;
using torch_ext::FuturePtr;
using torch_ext::testing::run_on_small_stack;

constexpr int kLinks = 1'000'000;
// Each link of c10's recursion takes hundreds of bytes of stack, so a chain of
// a million needs hundreds of MiB; a bounded depth fits easily in this.
constexpr size_t kSmallStack = 256 * 1024;

using ChainBuilder = FuturePtr (*)(const FuturePtr& head);

// A pending future of any value.
FuturePtr any_future() {
  return torch_ext_test::make_future(c10::AnyType::get());
}

// Each callback owns the next future, as a callback that completes it does.
FuturePtr raw_add_callback_chain(const FuturePtr& head) {
  FuturePtr tail = head;
  for (int i = 0; i < kLinks; ++i) {
    FuturePtr next = any_future();
    tail->addCallback([next](Future&) { next->markCompleted(); });
    tail = std::move(next);
  }
  return tail;
}

FuturePtr wrap_future_chain(const FuturePtr& head) {
  FuturePtr tail = head;
  for (int i = 0; i < kLinks; ++i) {
    tail = torch_ext::wrap_future(tail);
  }
  return tail;
}

FuturePtr on_complete_chain(const FuturePtr& head) {
  FuturePtr tail = head;
  for (int i = 0; i < kLinks; ++i) {
    FuturePtr next = any_future();
    torch_ext::on_complete(tail, [next](Future& done) {
      if (done.hasError()) {
        next->setError(done.exception_ptr());
      } else {
        next->markCompleted();
      }
    });
    tail = std::move(next);
  }
  return tail;
}

double now_ms(clockid_t clock) {
  timespec now{};
  clock_gettime(clock, &now);
  return now.tv_sec * 1e3 + now.tv_nsec / 1e6;
}

struct Completion {
  std::thread::id completer;
  std::thread::id tail_completed_on;
  bool tail_complete_on_return = false;
};

// Completes `head` on a thread with a small stack, as `complete` says.
Completion complete_on_small_stack(
    const FuturePtr& head,
    const FuturePtr& tail,
    const std::function<void()>& complete,
    const char* what) {
  Completion result;
  torch_ext::on_complete(tail, [&](Future&) {
    result.tail_completed_on = std::this_thread::get_id();
  });
  run_on_small_stack(kSmallStack, [&] {
    result.completer = std::this_thread::get_id();
    const double wall_start = now_ms(CLOCK_MONOTONIC);
    const double cpu_start = now_ms(CLOCK_THREAD_CPUTIME_ID);
    complete();
    const double cpu = now_ms(CLOCK_THREAD_CPUTIME_ID) - cpu_start;
    const double wall = now_ms(CLOCK_MONOTONIC) - wall_start;
    result.tail_complete_on_return = tail->completed();
    // CPU time of this thread as well: wall time is unreliable on a busy box.
    std::cout << "[ measured ] " << what << ": completing a chain of "
              << kLinks << " links took " << wall << " ms wall, " << cpu
              << " ms CPU\n";
  });
  return result;
}

void expect_completes_in_bounded_stack(ChainBuilder build, const char* what) {
  {
    FuturePtr head = any_future();
    FuturePtr tail = build(head);
    Completion done = complete_on_small_stack(
        head, tail, [&] { head->markCompleted(torch::ones({1})); }, what);
    EXPECT_TRUE(done.tail_complete_on_return);
    EXPECT_EQ(done.tail_completed_on, done.completer);
    ASSERT_TRUE(tail->hasValue());
    EXPECT_TRUE(tail->value().isNone());
  }
  {
    FuturePtr head = any_future();
    FuturePtr tail = build(head);
    auto error = std::make_exception_ptr(std::runtime_error("head failed"));
    Completion done = complete_on_small_stack(
        head, tail, [&] { head->setError(error); }, what);
    EXPECT_TRUE(done.tail_complete_on_return);
    EXPECT_EQ(done.tail_completed_on, done.completer);
    EXPECT_EQ(tail->exception_ptr(), error);
  }
}

void expect_dropped_in_bounded_stack(ChainBuilder build) {
  FuturePtr head = any_future();
  c10::weak_intrusive_ptr<Future> weak_tail(build(head));
  ASSERT_FALSE(weak_tail.expired()); // the chain owns its tail
  run_on_small_stack(kSmallStack, [&] { head.reset(); });
  EXPECT_TRUE(weak_tail.expired());
}

TEST(DeepChain, WrapFutureChainCompletesInBoundedStack) {
  expect_completes_in_bounded_stack(&wrap_future_chain, "wrap_future");
}

TEST(DeepChain, NeverCompletedWrapFutureChainIsDroppedInBoundedStack) {
  expect_dropped_in_bounded_stack(&wrap_future_chain);
}

TEST(DeepChain, OnCompleteChainCompletesInBoundedStack) {
  expect_completes_in_bounded_stack(&on_complete_chain, "on_complete");
}

TEST(DeepChain, NeverCompletedOnCompleteChainIsDroppedInBoundedStack) {
  expect_dropped_in_bounded_stack(&on_complete_chain);
}

// The same chains and stack with c10's own addCallback: what the tests above
// would see without torch_ext's flattening.
TEST(DeepChainDeathTest, RawAddCallbackChainOverflowsTheStackWhenCompleted) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        FuturePtr head = any_future();
        FuturePtr tail = raw_add_callback_chain(head);
        run_on_small_stack(kSmallStack, [&] { head->markCompleted(); });
      },
      "");
}

TEST(DeepChainDeathTest, RawAddCallbackChainOverflowsTheStackWhenDropped) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        FuturePtr head = any_future();
        raw_add_callback_chain(head);
        run_on_small_stack(kSmallStack, [&] { head.reset(); });
      },
      "");
}

} // namespace
