#include <torch_ext/future_utils.h>

// 1 when a wrapped future follows its source, as a C++ extension of a
// Python program would check it.
extern "C" __attribute__((visibility("default"))) int downstream_plugin_check() {
  auto source = c10::make_intrusive<c10::ivalue::Future>(c10::IntType::get());
  auto wrapped = torch_ext::wrap_future(source);
  source->markCompleted(7);
  return wrapped->completed() && wrapped->value().isNone() ? 1 : 0;
}
