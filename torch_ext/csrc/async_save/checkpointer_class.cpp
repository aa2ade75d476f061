// torch.classes.torch_ext.AsyncCheckpointer: the C++ AsyncCheckpointer for
// TorchScript and Python.
#include "checkpointer_class.h"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

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
  explicit ScriptCheckpointer(AsyncCheckpointerOptions options) : checkpointer_(std::move(options)) {}

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

c10::TypePtr script_checkpointer_type() {
  return c10::getCustomClassType<c10::intrusive_ptr<ScriptCheckpointer>>();
}

template <class T>
T option_type(T SaveOptions::*);

// __init__(self, int rank, int world_size, str? barrier_host,
//     int barrier_port, float barrier_timeout_secs, *, <each save option>)
//     -> NoneType, each with the default of the option structs. Written out,
// so that the save options come from visit_save_options.
c10::FunctionSchema make_init_schema() {
  using c10::Argument;
  const AsyncCheckpointerOptions defaults;
  std::vector<Argument> arguments{
      Argument("self", script_checkpointer_type()),
      Argument("rank", c10::IntType::get(), std::nullopt, defaults.rank),
      Argument("world_size", c10::IntType::get(), std::nullopt, defaults.world_size),
      Argument("barrier_host", c10::OptionalType::create(c10::StringType::get()), std::nullopt, c10::IValue()),
      Argument("barrier_port", c10::IntType::get(), std::nullopt, int64_t{0}),
      Argument(
          "barrier_timeout_secs",
          c10::FloatType::get(),
          std::nullopt,
          std::chrono::duration<double>(kDefaultBarrierTimeout).count()),
  };
  visit_save_options([&](const char* name, auto field) {
    using T = decltype(option_type(field));
    arguments.emplace_back(name, c10::getTypePtr<T>(), std::nullopt, c10::IValue(defaults.*field), /*kwarg_only=*/true);
  });
  return c10::FunctionSchema("__init__", "", std::move(arguments), {Argument("", c10::NoneType::get())});
}

const c10::FunctionSchema& init_schema() {
  static const c10::FunctionSchema schema = make_init_schema();
  return schema;
}

void init_boxed(torch::jit::Stack& stack) {
  const c10::FunctionSchema& schema = init_schema();
  const auto arguments = torch::jit::last(stack, schema.arguments().size());
  const auto argument = [&](const char* name) -> const c10::IValue& {
    return arguments[*schema.argumentIndexWithName(name)];
  };
  AsyncCheckpointerOptions options;
  options.rank = argument("rank").toInt();
  options.world_size = argument("world_size").toInt();
  visit_save_options([&](const char* name, auto field) {
    options.*field = argument(name).to<decltype(option_type(field))>();
  });
  if (const auto host = argument("barrier_host").toOptional<std::string>()) {
    const int64_t port = argument("barrier_port").toInt();
    TORCH_CHECK_VALUE(
        port > 0 && port < 65536,
        "AsyncCheckpointer expected a barrier_port in [1, 65535] with a barrier_host, got ",
        port);
    const std::chrono::duration<double> timeout(argument("barrier_timeout_secs").toDouble());
    check_barrier_timeout(timeout, "AsyncCheckpointer");
    options.barrier = std::make_shared<TCPStoreBarrier>(
        options.rank,
        options.world_size,
        "torch_ext/checkpoint",
        *host,
        static_cast<uint16_t>(port),
        std::chrono::ceil<std::chrono::milliseconds>(timeout));
  }
  auto checkpointer = c10::make_intrusive<ScriptCheckpointer>(std::move(options));
  argument("self").toObject()->setSlot(0, c10::IValue::make_capsule(std::move(checkpointer)));
  torch::jit::drop(stack, schema.arguments().size());
  stack.emplace_back();
}

} // namespace

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
      {Argument("self", script_checkpointer_type()),
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
  const torch_ext::ReadOptions read_defaults;
  m.class_<ScriptCheckpointer>("AsyncCheckpointer")
      ._def_unboxed("__init__", torch_ext::ops::init_boxed, torch_ext::ops::init_schema())
      .def(
          "load",
          &ScriptCheckpointer::load,
          "",
          {torch::arg("path"), torch::arg("verify") = read_defaults.verify, torch::arg("keys") = std::nullopt})
      .def("close", &ScriptCheckpointer::close)
      ._def_unboxed(
          "save", torch_ext::ops::checkpointer_save_boxed, torch_ext::ops::checkpointer_save_schema());
}
