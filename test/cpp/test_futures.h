// Futures for the tests of the future helpers.
#pragma once

#include <ATen/core/ivalue.h>

#include <torch_ext/future_utils.h>

namespace torch_ext_test {

// A pending future of `type`.
inline torch_ext::FuturePtr make_future(c10::TypePtr type = c10::TensorType::get()) {
  return c10::make_intrusive<c10::ivalue::Future>(std::move(type));
}

// What a callback throws that derives from no std::exception.
struct NotAStdException {
  int code = 0;
};

} // namespace torch_ext_test
