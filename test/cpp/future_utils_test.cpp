#include <torch_ext/future_utils.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_futures.h"

namespace {

using c10::ivalue::Future;
using torch_ext::FuturePtr;
using torch_ext::on_complete;
using torch_ext::wrap_future;
using torch_ext_test::make_future;
using torch_ext_test::NotAStdException;

TEST(WrapFuture, NonFutureIsAlreadyCompletedWithNone) {
  for (const c10::IValue& value :
       {c10::IValue(3), c10::IValue(torch::ones({2})), c10::IValue()}) {
    FuturePtr wrapped = wrap_future(value);
    ASSERT_TRUE(wrapped->completed());
    EXPECT_TRUE(wrapped->hasValue());
    EXPECT_TRUE(wrapped->value().isNone());
    EXPECT_EQ(*wrapped->elementType(), *c10::NoneType::get());
  }
}

TEST(WrapFuture, CompletesWithNoneWhenTheSourceCompletesWithAValue) {
  FuturePtr source = make_future();
  FuturePtr wrapped = wrap_future(source);
  EXPECT_FALSE(wrapped->completed());
  EXPECT_EQ(*wrapped->elementType(), *c10::NoneType::get());
  source->markCompleted(torch::ones({4}));
  ASSERT_TRUE(wrapped->completed());
  EXPECT_TRUE(wrapped->hasValue());
  EXPECT_TRUE(wrapped->value().isNone());
}

TEST(WrapFuture, ForwardsTheSourcesVeryExceptionPtr) {
  FuturePtr source = make_future();
  FuturePtr wrapped = wrap_future(source);
  auto error = std::make_exception_ptr(std::runtime_error("staging failed"));
  source->setError(error);
  ASSERT_TRUE(wrapped->completed());
  ASSERT_TRUE(wrapped->hasError());
  EXPECT_EQ(wrapped->exception_ptr(), error);
  EXPECT_THROW(wrapped->waitAndThrow(), std::runtime_error);
}

TEST(WrapFuture, AlreadyCompletedSourceGivesACompletedResult) {
  FuturePtr with_value = make_future();
  with_value->markCompleted(torch::zeros({1}));
  FuturePtr wrapped = wrap_future(with_value);
  ASSERT_TRUE(wrapped->completed());
  EXPECT_TRUE(wrapped->value().isNone());

  FuturePtr with_error = make_future();
  auto error = std::make_exception_ptr(std::logic_error("bad"));
  with_error->setError(error);
  FuturePtr wrapped_error = wrap_future(with_error);
  ASSERT_TRUE(wrapped_error->completed());
  EXPECT_EQ(wrapped_error->exception_ptr(), error);
}

TEST(WrapFuture, CompletedSourceWrappedInsideACallbackIsCompleteOnReturn) {
  FuturePtr done = make_future();
  done->markCompleted(torch::zeros({1}));
  FuturePtr trigger = make_future();
  bool complete_on_return = false;
  on_complete(trigger, [&](Future&) {
    complete_on_return = wrap_future(done)->completed();
  });
  trigger->markCompleted(torch::zeros({1}));
  EXPECT_TRUE(complete_on_return);
}

TEST(WrapFuture, CompletesOnTheCompletingThreadDuringItsCompletion) {
  FuturePtr source = make_future();
  FuturePtr wrapped = wrap_future(source);
  std::thread::id callback_thread;
  on_complete(wrapped, [&](Future&) {
    callback_thread = std::this_thread::get_id();
  });
  std::thread::id completer_thread;
  bool complete_when_mark_returned = false;
  std::thread completer([&] {
    completer_thread = std::this_thread::get_id();
    source->markCompleted(torch::ones({1}));
    complete_when_mark_returned = wrapped->completed();
  });
  completer.join();
  EXPECT_TRUE(complete_when_mark_returned);
  EXPECT_EQ(callback_thread, completer_thread);
  EXPECT_NE(callback_thread, std::this_thread::get_id());
}

TEST(WrapFuture, KeepsNoReferenceToTheSourceOrItsValue) {
  FuturePtr source = make_future();
  FuturePtr wrapped = wrap_future(source);

  torch::Tensor staged = torch::ones({1024});
  c10::weak_intrusive_ptr<c10::StorageImpl> weak_storage(
      staged.storage().getWeakStorageImpl());
  source->markCompleted(staged);
  staged.reset();
  EXPECT_FALSE(weak_storage.expired()); // the source still owns the value
  source.reset();
  EXPECT_TRUE(weak_storage.expired());
  EXPECT_TRUE(wrapped->value().isNone());
}

TEST(WrapFuture, DroppedPendingSourceIsFreedWhileTheResultLivesOn) {
  FuturePtr source = make_future();
  c10::weak_intrusive_ptr<Future> weak_source(source);
  FuturePtr wrapped = wrap_future(source);
  source.reset();
  EXPECT_TRUE(weak_source.expired());
  EXPECT_FALSE(wrapped->completed());
}

TEST(WrapFuture, ResultCompletedByHandFirstStandsAndTheSourceDoesNotThrow) {
  FuturePtr source = make_future();
  FuturePtr wrapped = wrap_future(source);
  wrapped->markCompleted();
  EXPECT_NO_THROW(source->markCompleted(torch::ones({1})));
  EXPECT_TRUE(wrapped->hasValue());

  FuturePtr failing = make_future();
  FuturePtr failed_by_hand = wrap_future(failing);
  auto by_hand = std::make_exception_ptr(std::runtime_error("cancelled"));
  failed_by_hand->setError(by_hand);
  EXPECT_NO_THROW(failing->setError(
      std::make_exception_ptr(std::runtime_error("source failed"))));
  EXPECT_EQ(failed_by_hand->exception_ptr(), by_hand);
}

TEST(WrapFuture, CopiesTheSourcesDevices) {
  auto source = c10::make_intrusive<Future>(
      c10::TensorType::get(), std::vector<c10::Device>{c10::Device(c10::kCPU, 0)});
  ASSERT_EQ(source->devices().size(), 1u);
  FuturePtr wrapped = wrap_future(source);
  EXPECT_EQ(wrapped->devices(), source->devices());
  // Completing it would need a backend with stream pools (CUDA): CPU has none.
}

TEST(WrapFuture, NullFutureIsAClearError) {
  try {
    wrap_future(c10::IValue(FuturePtr()));
    FAIL() << "expected c10::Error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("null Future"), std::string::npos)
        << e.what();
  }
}

TEST(OnComplete, RunsOnceWithTheValueOrTheError) {
  FuturePtr ok = make_future();
  int ok_calls = 0;
  on_complete(ok, [&](Future& f) {
    ++ok_calls;
    EXPECT_EQ(&f, ok.get());
    EXPECT_TRUE(f.hasValue());
  });
  EXPECT_EQ(ok_calls, 0);
  ok->markCompleted(torch::ones({1}));
  EXPECT_EQ(ok_calls, 1);

  FuturePtr failed = make_future();
  int failed_calls = 0;
  on_complete(failed, [&](Future& f) {
    ++failed_calls;
    EXPECT_TRUE(f.hasError());
  });
  failed->setError(std::make_exception_ptr(std::runtime_error("x")));
  EXPECT_EQ(failed_calls, 1);
}

TEST(OnComplete, RegisteredOnACompletedFutureInsideACallbackRunsAtOnce) {
  FuturePtr done = make_future();
  done->markCompleted(torch::zeros({1}));
  FuturePtr trigger = make_future();
  bool ran_before_on_complete_returned = false;
  on_complete(trigger, [&](Future&) {
    bool ran = false;
    on_complete(done, [&](Future&) { ran = true; });
    ran_before_on_complete_returned = ran;
  });
  trigger->markCompleted(torch::zeros({1}));
  EXPECT_TRUE(ran_before_on_complete_returned);
}

TEST(OnComplete, RunsInlineWhenAlreadyComplete) {
  FuturePtr done = make_future();
  done->markCompleted(torch::ones({1}));
  std::thread::id ran_on;
  on_complete(done, [&](Future&) { ran_on = std::this_thread::get_id(); });
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST(OnComplete, ThrowingCallbacksAreLoggedAndStopNothing) {
  FuturePtr source = make_future();
  on_complete(source, [](Future&) { throw std::runtime_error("std boom"); });
  on_complete(source, [](Future&) { TORCH_CHECK(false, "c10 boom"); });
  on_complete(source, [](Future&) { throw NotAStdException{}; });
  on_complete(source, [](Future&) { throw 42; });
  bool last_ran = false;
  on_complete(source, [&](Future&) { last_ran = true; });

  testing::internal::CaptureStderr();
  EXPECT_NO_THROW(source->markCompleted(torch::ones({1})));
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(last_ran);
  EXPECT_NE(log.find("std boom"), std::string::npos) << log;
  EXPECT_NE(log.find("c10 boom"), std::string::npos) << log;
  EXPECT_NE(log.find("not a std::exception"), std::string::npos) << log;
}

TEST(OnComplete, ThrowingCallbackOnACompletedFutureDoesNotEscapeAddCallback) {
  FuturePtr done = make_future();
  done->setError(std::make_exception_ptr(std::runtime_error("failed")));
  testing::internal::CaptureStderr();
  EXPECT_NO_THROW(on_complete(done, [](Future& f) { f.value(); }));
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("failed"), std::string::npos) << log;
}

TEST(OnComplete, NullFutureOrEmptyCallbackIsAClearError) {
  EXPECT_THROW(on_complete(FuturePtr(), [](Future&) {}), c10::Error);
  EXPECT_THROW(
      on_complete(make_future(), std::function<void(Future&)>()), c10::Error);
}

TEST(OnComplete, FutureCompletedInsideACallbackHasRunItsCallbacksOnReturn) {
  FuturePtr trigger = make_future();
  FuturePtr inner = make_future();
  FuturePtr wrapped_inner = wrap_future(inner);
  bool complete_on_return = false;
  on_complete(trigger, [&](Future&) {
    inner->markCompleted(torch::ones({1}));
    complete_on_return = wrapped_inner->completed();
  });
  trigger->markCompleted(torch::ones({1}));
  EXPECT_TRUE(complete_on_return);
}

// Callbacks of futures completed from within deeply nested callbacks are
// queued, but must run in the order c10's own recursion would run them.
TEST(OnComplete, NestedCompletionsRunInC10sOrder) {
  auto run = [](bool safe) {
    std::vector<std::string> order;
    auto add = [&](const FuturePtr& f, std::function<void(Future&)> cb) {
      if (safe) {
        on_complete(f, std::move(cb));
      } else {
        f->addCallback(std::move(cb));
      }
    };
    FuturePtr root = make_future(), a = make_future(), b = make_future(),
              a1 = make_future();
    add(root, [&](Future&) {
      order.push_back("root-1");
      a->markCompleted(torch::ones({1}));
      b->markCompleted(torch::ones({1}));
    });
    add(root, [&](Future&) { order.push_back("root-2"); });
    add(a, [&](Future&) {
      order.push_back("a-1");
      a1->markCompleted(torch::ones({1}));
    });
    add(a, [&](Future&) { order.push_back("a-2"); });
    add(a1, [&](Future&) { order.push_back("a1-1"); });
    add(b, [&](Future&) { order.push_back("b-1"); });
    // Complete root from 24 nested callbacks deep, past the depth where safe
    // callbacks stop nesting and queue.
    std::vector<FuturePtr> ladder;
    for (int i = 0; i < 24; ++i) {
      ladder.push_back(make_future());
    }
    for (size_t i = 0; i < ladder.size(); ++i) {
      const FuturePtr& next = i + 1 < ladder.size() ? ladder[i + 1] : root;
      add(ladder[i], [next](Future&) { next->markCompleted(torch::ones({1})); });
    }
    ladder.front()->markCompleted(torch::ones({1}));
    return order;
  };
  const std::vector<std::string> c10_order = run(false);
  ASSERT_EQ(c10_order.size(), 6u);
  EXPECT_EQ(run(true), c10_order);
}

TEST(WrapFuture, LongChainCompletesAndIsDroppedInBoundedStack) {
  constexpr int kLinks = 200000; // raw addCallback links segfault near 10,000
  for (bool fail : {false, true}) {
    FuturePtr head = make_future();
    FuturePtr tail = head;
    for (int i = 0; i < kLinks; ++i) {
      tail = wrap_future(tail);
    }
    if (fail) {
      auto error = std::make_exception_ptr(std::runtime_error("head failed"));
      head->setError(error);
      EXPECT_EQ(tail->exception_ptr(), error);
    } else {
      head->markCompleted(torch::ones({1}));
      EXPECT_TRUE(tail->hasValue());
    }
  }
  FuturePtr never = make_future();
  c10::weak_intrusive_ptr<Future> weak_head(never);
  FuturePtr tail = never;
  for (int i = 0; i < kLinks; ++i) {
    tail = wrap_future(tail);
  }
  tail.reset();
  never.reset(); // destroys the whole chain
  EXPECT_TRUE(weak_head.expired());
}

} // namespace
