#include "checkpointer_class.h"

#include <chrono>

#include <c10/util/Exception.h>

#include <torch_ext/tcp_store_barrier.h>

namespace torch_ext::ops {
namespace {

AsyncCheckpointerOptions make_options(
    int64_t rank,
    int64_t world_size,
    int64_t staging_threads,
    const std::optional<std::string>& barrier_host,
    int64_t barrier_port,
    double barrier_timeout_secs) {
  AsyncCheckpointerOptions options;
  options.rank = rank;
  options.world_size = world_size;
  TORCH_CHECK_VALUE(
      staging_threads >= 1 && staging_threads <= 1024,
      "AsyncCheckpointer expected 1 <= staging_threads <= 1024, got ",
      staging_threads);
  options.staging_threads = static_cast<int>(staging_threads);
  if (barrier_host) {
    TORCH_CHECK_VALUE(
        barrier_port > 0 && barrier_port < 65536,
        "AsyncCheckpointer expected a barrier_port in [1, 65535] with a "
        "barrier_host, got ",
        barrier_port);
    TORCH_CHECK_VALUE(
        barrier_timeout_secs > 0,
        "AsyncCheckpointer expected barrier_timeout_secs > 0, got ",
        barrier_timeout_secs);
    options.barrier = std::make_shared<TCPStoreBarrier>(
        rank,
        world_size,
        "torch_ext/checkpoint",
        *barrier_host,
        static_cast<uint16_t>(barrier_port),
        std::chrono::milliseconds(
            static_cast<int64_t>(barrier_timeout_secs * 1000)));
  }
  return options;
}

} // namespace

ScriptCheckpointer::ScriptCheckpointer(
    int64_t rank,
    int64_t world_size,
    int64_t staging_threads,
    std::optional<std::string> barrier_host,
    int64_t barrier_port,
    double barrier_timeout_secs)
    : checkpointer_(make_options(
          rank,
          world_size,
          staging_threads,
          barrier_host,
          barrier_port,
          barrier_timeout_secs)) {}

c10::Dict<std::string, c10::IValue> ScriptCheckpointer::load(
    const std::string& path) const {
  // Unpickled dicts have Any keys; TorchScript wants Dict(str, Any).
  c10::impl::GenericDict loaded(c10::StringType::get(), c10::AnyType::get());
  for (const auto& entry : checkpointer_.load(path).toGenericDict()) {
    TORCH_CHECK_TYPE(
        entry.key().isString(),
        "AsyncCheckpointer.load expected the checkpoint at '",
        path,
        "' to be a dict with string keys, found a key of type ",
        entry.key().tagKind());
    loaded.insert(entry.key(), entry.value());
  }
  return c10::impl::toTypedDict<std::string, c10::IValue>(std::move(loaded));
}

void ScriptCheckpointer::close() {
  checkpointer_.close();
}

void checkpointer_save_boxed(torch::jit::Stack& stack) {
  c10::IValue state_dict = torch::jit::pop(stack);
  const std::string path = torch::jit::pop(stack).toStringRef();
  auto self = torch::jit::pop(stack).toCustomClass<ScriptCheckpointer>();
  auto [staged, written] = self->checkpointer().save(path, state_dict);
  torch::jit::push(
      stack, c10::ivalue::Tuple::create(std::move(staged), std::move(written)));
}

c10::FunctionSchema checkpointer_save_schema() {
  using c10::Argument;
  const c10::TypePtr done = c10::FutureType::create(c10::NoneType::get());
  return c10::FunctionSchema(
      "save",
      "",
      {Argument(
           "self",
           c10::getCustomClassType<c10::intrusive_ptr<ScriptCheckpointer>>()),
       Argument("path", c10::StringType::get()),
       Argument(
           "state_dict",
           c10::DictType::create(c10::StringType::get(), c10::AnyType::get()))},
      // A method has one return: the two futures come as a tuple.
      {Argument("", c10::TupleType::create({done, done}))});
}

} // namespace torch_ext::ops
