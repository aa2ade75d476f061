// Checks of what the library says: the text of an error, and what it names.
#pragma once

#include <c10/util/Exception.h>

#include <string>

namespace torch_ext_test {

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The message (without backtrace) of the c10::Error that `f` throws, or ""
// if it throws none.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "";
}

} // namespace torch_ext_test
