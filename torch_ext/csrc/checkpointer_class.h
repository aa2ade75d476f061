#pragma once

#include <ATen/core/function_schema.h>
#include <ATen/core/stack.h>
#include <torch/custom_class.h>

#include <torch_ext/checkpointer.h>

namespace torch_ext::ops {

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
      double barrier_timeout_secs);

  c10::Dict<std::string, c10::IValue> load(const std::string& path) const;
  void close();
  AsyncCheckpointer& checkpointer() {
    return checkpointer_;
  }

 private:
  AsyncCheckpointer checkpointer_;
};

// save(self, str path, Dict(str, Any) state_dict)
//     -> (Future(NoneType), Future(NoneType)): stage_future, write_future
// Boxed, with its schema written out: schema inference has no case for
// futures, and a typed method returning them aborts at load time.
void checkpointer_save_boxed(torch::jit::Stack& stack);
c10::FunctionSchema checkpointer_save_schema();

} // namespace torch_ext::ops
