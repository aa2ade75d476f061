#pragma once

#include <pthread.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <stdexcept>
#include <string>

namespace torch_ext::testing {

// The longest a test waits for another thread or rank before it fails.
constexpr auto kWaitLimit = std::chrono::seconds(120);

// Runs `fn` on a new thread with a stack of `bytes` and joins it: code that
// recurses once per link of a long chain overflows such a stack, code with
// bounded depth does not.
inline void run_on_small_stack(size_t bytes, std::function<void()> fn) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, bytes);
  pthread_t thread;
  const int error = pthread_create(
      &thread,
      &attr,
      [](void* arg) -> void* {
        (*static_cast<std::function<void()>*>(arg))();
        return nullptr;
      },
      &fn);
  pthread_attr_destroy(&attr);
  if (error != 0) {
    throw std::runtime_error(
        "pthread_create failed with error " + std::to_string(error));
  }
  pthread_join(thread, nullptr);
}

} // namespace torch_ext::testing
