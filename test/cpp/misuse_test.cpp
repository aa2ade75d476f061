// A wrapped future completed by hand while its source completes on another
// thread: whoever wins, the wrapped future completes once and the source's
// completer gets no exception.
#include <torch_ext/future_utils.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using c10::ivalue::Future;
using torch_ext::FuturePtr;

constexpr int kRounds = 20000;

TEST(Misuse, CompletionByHandRacingTheSourceNeverThrowsIntoTheSource) {
  auto by_hand = std::make_exception_ptr(std::runtime_error("by hand"));
  auto source_error = std::make_exception_ptr(std::runtime_error("source"));
  int not_once = 0;
  int source_threw = 0;
  std::string source_message;
  for (int round = 0; round < kRounds; ++round) {
    auto source = c10::make_intrusive<Future>(c10::TensorType::get());
    FuturePtr wrapped = torch_ext::wrap_future(source);
    std::atomic<int> completions{0};
    torch_ext::on_complete(wrapped, [&](Future&) { completions.fetch_add(1); });
    std::atomic<bool> go{false};
    std::thread hand([&] {
      while (!go.load()) {
      }
      // Losing the race is c10's error for whoever completes by hand.
      try {
        if (round % 2) {
          wrapped->markCompleted();
        } else {
          wrapped->setError(by_hand);
        }
      } catch (const c10::Error&) {
      }
    });
    go.store(true);
    try {
      if (round % 4 < 2) {
        source->markCompleted(torch::ones({1}));
      } else {
        source->setError(source_error);
      }
    } catch (const std::exception& e) {
      ++source_threw;
      source_message = e.what();
    }
    hand.join();
    not_once += completions.load() != 1;
  }
  EXPECT_EQ(source_threw, 0) << source_message;
  EXPECT_EQ(not_once, 0);
}

} // namespace
