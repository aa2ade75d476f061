// Eight threads create sources and wrap them while eight others complete them:
// wrap_future races with markCompleted and setError a million times.
#include <torch_ext/future_utils.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using c10::ivalue::Future;
using torch_ext::FuturePtr;

constexpr int kCreators = 8;
constexpr int kCompleters = 8;
constexpr int kOperations = 1'000'000;

struct Source {
  int id;
  FuturePtr future;
};

// Sources from the creators to the completers.
class SourceQueue {
 public:
  void push(Source source) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      sources_.push_back(std::move(source));
    }
    ready_.notify_one();
  }

  void close() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
    }
    ready_.notify_all();
  }

  std::optional<Source> pop() {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [&] { return closed_ || !sources_.empty(); });
    if (sources_.empty()) {
      return std::nullopt;
    }
    Source source = std::move(sources_.front());
    sources_.pop_front();
    return source;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Source> sources_;
  bool closed_ = false;
};

bool fails(int id) {
  return id % 3 == 0;
}

TEST(Stress, EveryWrappedFutureCompletesOnceOnTheThreadThatCompletedItsSource) {
  SourceQueue queue;
  // Written by the completing thread before it completes the source.
  std::vector<std::atomic<std::thread::id>> completer_of(kOperations);
  std::vector<std::atomic<int>> completions(kOperations);
  std::atomic<int> wrong_thread{0};
  std::atomic<int> wrong_outcome{0};
  std::vector<std::exception_ptr> errors;
  for (int i = 0; i < kCompleters; ++i) {
    errors.push_back(std::make_exception_ptr(
        std::runtime_error("completer " + std::to_string(i))));
  }

  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> completers;
  for (int c = 0; c < kCompleters; ++c) {
    completers.emplace_back([&, c] {
      while (std::optional<Source> source = queue.pop()) {
        completer_of[source->id].store(std::this_thread::get_id());
        if (fails(source->id)) {
          source->future->setError(errors[c]);
        } else {
          source->future->markCompleted(torch::ones({1}));
        }
      }
    });
  }
  std::vector<std::thread> creators;
  for (int p = 0; p < kCreators; ++p) {
    creators.emplace_back([&, p] {
      const std::thread::id creator = std::this_thread::get_id();
      for (int id = p; id < kOperations; id += kCreators) {
        auto source = c10::make_intrusive<Future>(c10::TensorType::get());
        queue.push({id, source});
        // A completer may complete the source before, during or after this.
        FuturePtr wrapped = torch_ext::wrap_future(source);
        torch_ext::on_complete(wrapped, [&, id, creator](Future& done) {
          completions[id].fetch_add(1);
          const std::thread::id here = std::this_thread::get_id();
          // Inline on the creator if the source was already complete.
          if (here != completer_of[id].load() && here != creator) {
            wrong_thread.fetch_add(1);
          }
          const bool ok = fails(id)
              ? done.hasError()
              : done.hasValue() && done.constValue().isNone();
          if (!ok) {
            wrong_outcome.fetch_add(1);
          }
        });
      }
    });
  }
  for (std::thread& creator : creators) {
    creator.join();
  }
  queue.close();
  for (std::thread& completer : completers) {
    completer.join();
  }
  const std::chrono::duration<double> took =
      std::chrono::steady_clock::now() - start;
  std::cout << "[ measured ] " << kOperations << " create+wrap+complete with "
            << kCreators << "+" << kCompleters << " threads: " << took.count()
            << " s\n";

  int not_once = 0;
  for (const std::atomic<int>& count : completions) {
    not_once += count.load() != 1;
  }
  EXPECT_EQ(not_once, 0);
  EXPECT_EQ(wrong_thread.load(), 0);
  EXPECT_EQ(wrong_outcome.load(), 0);
}

} // namespace
