#include "staging.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <c10/util/ParallelGuard.h>

namespace torch_ext::detail {
namespace {

// Large tensors are copied in pieces so that several threads share them.
constexpr size_t kPieceBytes = size_t{16} << 20;

struct CopyTask {
  at::Tensor source;
  at::Tensor destination;
  size_t offset = 0; // bytes; memcpy pieces only
  size_t size = 0; // 0: the whole tensor through copy_
};

std::string child_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

bool reusable_for(const at::Tensor& buffer, const at::Tensor& tensor) {
  return buffer.use_count() == 1 && buffer.storage().use_count() == 1 &&
      buffer.sizes() == tensor.sizes() && buffer.dtype() == tensor.dtype();
}

class Stager {
 public:
  explicit Stager(std::vector<at::Tensor> previous)
      : previous_(std::move(previous)) {}

  std::vector<at::Tensor> take_buffers() {
    return std::move(buffers_);
  }

  c10::IValue copy(const c10::IValue& value, const std::string& where) {
    if (value.isTensor()) {
      return stage_tensor(value.toTensor(), where);
    }
    if (value.isGenericDict()) {
      c10::impl::GenericDict copied(c10::StringType::get(), c10::AnyType::get());
      for (const auto& entry : value.toGenericDict()) {
        TORCH_CHECK_TYPE(
            entry.key().isString(),
            "state_dict keys must be strings, got a key of type ",
            entry.key().tagKind(),
            where.empty() ? std::string() : " in '" + where + "'");
        const std::string key = entry.key().toStringRef();
        copied.insert(key, copy(entry.value(), child_path(where, key)));
      }
      return copied;
    }
    if (value.isList()) {
      c10::impl::GenericList copied(c10::AnyType::get());
      const c10::List<c10::IValue> items = value.toList();
      copied.reserve(items.size());
      for (size_t i = 0; i < items.size(); ++i) {
        copied.push_back(copy(items.get(i), where + "[" + std::to_string(i) + "]"));
      }
      return copied;
    }
    TORCH_CHECK_TYPE(
        value.isInt() || value.isDouble() || value.isBool() ||
            value.isString() || value.isNone(),
        "state_dict entry '",
        where,
        "' is a ",
        value.tagKind(),
        "; expected a tensor, a dict with string keys, a list, an int, a "
        "float, a bool, a string or None");
    return value; // immutable
  }

  void run(int threads) {
    std::atomic<size_t> next{0};
    std::exception_ptr first_error;
    std::mutex error_mutex;
    auto work = [&] {
      // Our copies stay on this thread instead of taking the intra-op pool
      // from the training loop.
      c10::ParallelGuard serial(true);
      for (size_t i = next++; i < tasks_.size(); i = next++) {
        try {
          run_task(tasks_[i]);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (!first_error) {
            first_error = std::current_exception();
          }
          next = tasks_.size();
        }
      }
    };
    std::vector<std::thread> helpers;
    const size_t extra = std::min<size_t>(std::max(threads, 1) - 1, tasks_.size());
    helpers.reserve(extra);
    for (size_t i = 0; i < extra; ++i) {
      helpers.emplace_back(work);
    }
    work();
    for (std::thread& helper : helpers) {
      helper.join();
    }
    if (first_error) {
      std::rethrow_exception(first_error);
    }
  }

 private:
  c10::IValue stage_tensor(const at::Tensor& tensor, const std::string& where) {
    TORCH_CHECK_TYPE(
        tensor.layout() == at::kStrided && !tensor.is_quantized(),
        "state_dict entry '",
        where,
        "' is a ",
        tensor.layout(),
        " tensor; expected a dense (strided) tensor");
    at::Tensor destination;
    const size_t index = buffers_.size();
    if (index < previous_.size() && reusable_for(previous_[index], tensor)) {
      destination = std::move(previous_[index]);
    } else {
      if (index < previous_.size()) {
        previous_[index].reset(); // its memory may serve this allocation
      }
      destination =
          at::empty(tensor.sizes(), at::TensorOptions().dtype(tensor.dtype()));
    }
    buffers_.push_back(destination);
    const size_t bytes = destination.nbytes();
    if (tensor.device().is_cpu() && tensor.is_contiguous() &&
        !tensor.is_conj() && !tensor.is_neg()) {
      for (size_t offset = 0; offset < bytes; offset += kPieceBytes) {
        tasks_.push_back(
            {tensor, destination, offset, std::min(kPieceBytes, bytes - offset)});
      }
    } else {
      tasks_.push_back({tensor, destination, 0, 0});
    }
    return destination;
  }

  static void run_task(const CopyTask& task) {
    if (task.size == 0) {
      task.destination.copy_(task.source);
      return;
    }
    std::memcpy(
        static_cast<char*>(task.destination.data_ptr()) + task.offset,
        static_cast<const char*>(task.source.const_data_ptr()) + task.offset,
        task.size);
  }

  std::vector<CopyTask> tasks_;
  std::vector<at::Tensor> previous_;
  std::vector<at::Tensor> buffers_;
};

} // namespace

c10::IValue stage_state_dict(
    const c10::IValue& state_dict,
    int threads,
    std::vector<at::Tensor>& buffers) {
  TORCH_CHECK_TYPE(
      state_dict.isGenericDict(),
      "expected the state_dict to be a dict with string keys, got ",
      state_dict.tagKind());
  Stager stager(std::exchange(buffers, {}));
  c10::IValue staged = stager.copy(state_dict, "");
  stager.run(threads);
  buffers = stager.take_buffers();
  return staged;
}

} // namespace torch_ext::detail
