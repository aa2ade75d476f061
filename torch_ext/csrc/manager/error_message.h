#pragma once

#include <exception>
#include <string>

#include <c10/util/Exception.h>

namespace torch_ext::detail {

// The message of `error`, as the manager puts it into a failure that every
// rank sees: without c10's backtrace.
inline std::string message_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an unknown error";
  }
}

} // namespace torch_ext::detail
