#pragma once

#include <exception>

#include <c10/util/Logging.h>

namespace torch_ext::detail {

// Runs `complete` (a markCompleted or setError): c10 lets a callback's
// exception escape from them, after the future is complete, and it must not
// stop the thread that completes checkpoint futures. `who` names it in the log.
template <typename Complete>
void complete_guarded(const char* who, Complete&& complete) noexcept {
  try {
    complete();
  } catch (const std::exception& e) {
    LOG(ERROR) << who << ": a callback of a checkpoint future threw: " << e.what();
  } catch (...) {
    LOG(ERROR) << who << ": a callback of a checkpoint future threw";
  }
}

} // namespace torch_ext::detail
