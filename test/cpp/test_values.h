// Values for the tests to save and load.
#pragma once

#include <ATen/core/Dict.h>
#include <ATen/core/jit_type.h>

namespace torch_ext_test {

// An empty dict keyed by str, of any values: a state dict to fill.
inline c10::impl::GenericDict string_dict() {
  return c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
}

} // namespace torch_ext_test
