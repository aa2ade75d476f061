// Failures of every kind: those of a source reach the wrapped future with
// their type; those of a callback are logged once and stop nothing.
#include <torch_ext/future_utils.h>

#include <exception>
#include <new>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_futures.h"

namespace {

using c10::ivalue::Future;
using torch_ext::FuturePtr;
using torch_ext_test::make_future;
using torch_ext_test::NotAStdException;

struct CustomError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Fails a source with `error`, wraps it (pending, then already failed) and
// rethrows what the wrapped future holds, for the caller to catch by type.
template <typename Thrown>
void expect_rethrown_as(const Thrown& error) {
  auto eptr = std::make_exception_ptr(error);
  for (bool fail_first : {false, true}) {
    FuturePtr source = make_future();
    if (fail_first) {
      source->setError(eptr);
    }
    FuturePtr wrapped = torch_ext::wrap_future(source);
    if (!fail_first) {
      source->setError(eptr);
    }
    ASSERT_TRUE(wrapped->hasError());
    EXPECT_EQ(wrapped->exception_ptr(), eptr);
    EXPECT_THROW(wrapped->waitAndThrow(), Thrown);
  }
}

TEST(SourceFailure, EveryKindReachesTheWrappedFutureWithItsType) {
  expect_rethrown_as(std::runtime_error("runtime"));
  expect_rethrown_as(std::logic_error("logic"));
  expect_rethrown_as(std::bad_alloc());
  expect_rethrown_as(CustomError("custom"));
  const c10::SourceLocation here{__func__, __FILE__, __LINE__};
  expect_rethrown_as(c10::Error(here, "c10"));
  expect_rethrown_as(c10::TypeError(here, "type"));
  expect_rethrown_as(c10::ValueError(here, "value"));
  expect_rethrown_as(42);
  expect_rethrown_as(NotAStdException{7});
}

size_t count(const std::string& text, const std::string& needle) {
  size_t found = 0;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + 1)) {
    ++found;
  }
  return found;
}

// Inside a chain the throwing callbacks run from the per-thread queue rather
// than from markCompleted: each is still logged exactly once.
TEST(CallbackFailure, EachThrowIsLoggedOnceAndTheChainGoesOn) {
  FuturePtr head = make_future();
  FuturePtr middle = torch_ext::wrap_future(head);
  torch_ext::on_complete(
      middle, [](Future&) { throw std::runtime_error("std-throw"); });
  torch_ext::on_complete(middle, [](Future&) { TORCH_CHECK(false, "c10-throw"); });
  torch_ext::on_complete(middle, [](Future&) { throw NotAStdException{1}; });
  torch_ext::on_complete(middle, [](Future& f) { f.markCompleted(); });
  FuturePtr tail = torch_ext::wrap_future(middle);
  bool tail_callback_ran = false;
  torch_ext::on_complete(tail, [&](Future&) { tail_callback_ran = true; });

  testing::internal::CaptureStderr();
  EXPECT_NO_THROW(head->markCompleted(torch::ones({1})));
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(tail_callback_ran);
  EXPECT_TRUE(tail->hasValue());
  EXPECT_EQ(count(log, "std-throw"), 1u) << log;
  EXPECT_EQ(count(log, "c10-throw"), 1u) << log;
  EXPECT_EQ(count(log, "not a std::exception"), 1u) << log;
  // Completing a complete future again is c10's error, logged like any other.
  EXPECT_EQ(count(log, "Attempting to mark a completed Future"), 1u) << log;
}

} // namespace
