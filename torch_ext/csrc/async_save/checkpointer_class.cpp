// torch.classes.torch_ext.AsyncCheckpointer: the C++ AsyncCheckpointer for
// TorchScript and Python.
#include "checkpointer_class.h"

#include <chrono>

#include <torch/library.h>

#include <ATen/core/function_schema.h>
#include <ATen/core/stack.h>
#include <c10/util/Exception.h>
#include <torch/custom_class.h>

#include <torch_ext/tcp_store_barrier.h>

namespace torch_ext::ops {
namespace {

// torch.classes.torch_ext.AsyncCheckpointer: the C++ AsyncCheckpointer, with
// a TCPStoreBarrier when a barrier host is given.
class ScriptCheckpointer : public torch::CustomClassHolder {
 public:
  ScriptCheckpointer(
      int64_t rank,
      int64_t world_size,
      int64_t staging_threads,
      std::optional<std::string> barrier_host,
      int64_t barrier_port,
      double barrier_timeout_secs,
      int64_t max_staging_bytes,
      int64_t writer_nice);

  // load(self, str path, bool verify=True, str[]? keys=None) -> Dict(str, Any)
  c10::Dict<std::string, c10::IValue> load(
      const std::string& path,
      bool verify,
      const std::optional<std::vector<std::string>>& keys) const;
  void close();
  AsyncCheckpointer& checkpointer() {
    return checkpointer_;
  }

 private:
  AsyncCheckpointer checkpointer_;
};


AsyncCheckpointerOptions make_options(
    int64_t rank,
    int64_t world_size,
    int64_t staging_threads,
    const std::optional<std::string>& barrier_host,
    int64_t barrier_port,
    double barrier_timeout_secs,
    int64_t max_staging_bytes,
    int64_t writer_nice) {
  AsyncCheckpointerOptions options;
  options.rank = rank;
  options.world_size = world_size;
  options.staging_threads = staging_threads;
  options.max_staging_bytes = max_staging_bytes;
  options.writer_nice = writer_nice;
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
    double barrier_timeout_secs,
    int64_t max_staging_bytes,
    int64_t writer_nice)
    : checkpointer_(make_options(
          rank,
          world_size,
          staging_threads,
          barrier_host,
          barrier_port,
          barrier_timeout_secs,
          max_staging_bytes,
          writer_nice)) {}

c10::Dict<std::string, c10::IValue> ScriptCheckpointer::load(
    const std::string& path,
    bool verify,
    const std::optional<std::vector<std::string>>& keys) const {
  // TorchScript wants Dict(str, Any), whatever keys the file's dict has.
  c10::impl::GenericDict loaded(c10::StringType::get(), c10::AnyType::get());
  const c10::IValue state = checkpointer_.load(path, ReadOptions{verify, keys.value_or(std::vector<std::string>{})});
  TORCH_CHECK_TYPE(
      state.isGenericDict(),
      "AsyncCheckpointer.load expected the checkpoint at '",
      path,
      "' to hold a dict, found a ",
      state.tagKind());
  for (const auto& entry : state.toGenericDict()) {
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

AsyncCheckpointer& checkpointer_of(const c10::IValue& script_checkpointer) {
  return script_checkpointer.toCustomClass<ScriptCheckpointer>()->checkpointer();
}

namespace {

// save(self, str path, Dict(str, Any) state_dict)
//     -> (Future(NoneType), Future(NoneType)): stage_future, write_future
// Boxed, with its schema written out: schema inference has no case for
// futures, and a typed method returning them aborts at load time.
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

} // namespace
} // namespace torch_ext::ops

TORCH_LIBRARY_FRAGMENT(torch_ext, m) {
  using torch_ext::ops::ScriptCheckpointer;
  const torch_ext::AsyncCheckpointerOptions defaults;
  m.class_<ScriptCheckpointer>("AsyncCheckpointer")
      .def(
          torch::init<int64_t, int64_t, int64_t, std::optional<std::string>, int64_t, double, int64_t, int64_t>(),
          "",
          {torch::arg("rank") = defaults.rank,
           torch::arg("world_size") = defaults.world_size,
           torch::arg("staging_threads") = defaults.staging_threads,
           torch::arg("barrier_host") = std::nullopt,
           torch::arg("barrier_port") = 0,
           torch::arg("barrier_timeout_secs") = 600.0,
           torch::arg("max_staging_bytes") = defaults.max_staging_bytes,
           torch::arg("writer_nice") = defaults.writer_nice})
      .def(
          "load",
          &ScriptCheckpointer::load,
          "",
          {torch::arg("path"), torch::arg("verify") = true, torch::arg("keys") = std::nullopt})
      .def("close", &ScriptCheckpointer::close)
      ._def_unboxed(
          "save", torch_ext::ops::checkpointer_save_boxed, torch_ext::ops::checkpointer_save_schema());
}
