// torch_ext::wrap_future as a C++ caller reaches it: through the dispatcher.
#include <string>

#include <ATen/core/dispatch/Dispatcher.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using c10::ivalue::Future;

c10::IValue call_wrap_future(c10::IValue argument) {
  static const c10::OperatorHandle op =
      c10::Dispatcher::singleton().findSchemaOrThrow(
          "torch_ext::wrap_future", "");
  torch::jit::Stack stack{std::move(argument)};
  op.callBoxed(stack);
  EXPECT_EQ(stack.size(), 1u);
  return stack.back();
}

TEST(WrapFutureOp, IsRegisteredWithItsSchema) {
  auto op = c10::Dispatcher::singleton().findSchema({"torch_ext::wrap_future", ""});
  ASSERT_TRUE(op.has_value());
  EXPECT_EQ(
      c10::toString(op->schema()),
      "torch_ext::wrap_future(Future(t) original_result) -> Future(NoneType)");
}

TEST(WrapFutureOp, CompletesWithNoneOrTheSourcesError) {
  auto source = c10::make_intrusive<Future>(c10::TensorType::get());
  c10::IValue result = call_wrap_future(source);
  ASSERT_TRUE(result.isFuture());
  auto wrapped = result.toFuture();
  EXPECT_FALSE(wrapped->completed());
  source->markCompleted(torch::ones({2}));
  EXPECT_TRUE(wrapped->value().isNone());

  auto failing = c10::make_intrusive<Future>(c10::TensorType::get());
  auto failed = call_wrap_future(failing).toFuture();
  auto error = std::make_exception_ptr(std::runtime_error("write failed"));
  failing->setError(error);
  EXPECT_EQ(failed->exception_ptr(), error);
}

TEST(WrapFutureOp, NonFutureArgumentNamesTheExpectedType) {
  try {
    call_wrap_future(c10::IValue(torch::ones({1})));
    FAIL() << "expected c10::TypeError";
  } catch (const c10::TypeError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("Future(t)"), std::string::npos) << message;
    EXPECT_NE(message.find("Tensor"), std::string::npos) << message;
  }
}

} // namespace
