#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include <c10/util/Exception.h>

namespace torch_ext::detail {

// One thread that runs the tasks posted to it, in order. join() runs what
// was posted before it, then stops the thread.
class SerialExecutor {
 public:
  SerialExecutor() : thread_([this] { loop(); }) {}
  SerialExecutor(const SerialExecutor&) = delete;
  SerialExecutor& operator=(const SerialExecutor&) = delete;
  ~SerialExecutor() {
    join(); // std::terminate from a task of this executor
  }

  // Tasks must not throw: they own the futures they complete.
  void post(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      TORCH_CHECK(!stopping_, "post on a stopped SerialExecutor");
      tasks_.push_back(std::move(task));
    }
    wake_.notify_one();
  }

  void join() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) {
      TORCH_CHECK(
          thread_.get_id() != std::this_thread::get_id(),
          "a task of a SerialExecutor cannot wait for that executor to stop");
      thread_.join();
    }
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
        if (tasks_.empty()) {
          return;
        }
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::thread thread_; // last: starts once the members above exist
};

} // namespace torch_ext::detail
