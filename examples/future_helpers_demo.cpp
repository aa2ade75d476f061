// A short walk through wrap_future and on_complete that prints what happens.
#include <iostream>
#include <stdexcept>
#include <thread>

#include <torch/torch.h>
#include <torch_ext/future_utils.h>

using c10::ivalue::Future;

int main() {
  auto staged = c10::make_intrusive<Future>(c10::TensorType::get());
  auto done = torch_ext::wrap_future(staged);
  torch_ext::on_complete(done, [](Future& f) {
    std::cout << "  on_complete: done on thread " << std::this_thread::get_id()
              << (f.hasError() ? " with an error" : " with None") << "\n";
  });
  std::cout << "main thread " << std::this_thread::get_id()
            << ": done completed? " << done->completed() << "\n";
  std::thread stager([&] {
    std::cout << "stager thread " << std::this_thread::get_id()
              << " completes the source with a 1 MiB tensor\n";
    staged->markCompleted(torch::ones({256, 1024}));
  });
  stager.join();
  std::cout << "done completed? " << done->completed()
            << ", value is None? " << done->value().isNone() << "\n";

  auto failing = c10::make_intrusive<Future>(c10::TensorType::get());
  auto failed = torch_ext::wrap_future(failing);
  failing->setError(std::make_exception_ptr(std::runtime_error("disk full")));
  try {
    failed->waitAndThrow();
  } catch (const std::runtime_error& e) {
    std::cout << "a failed source fails the wrapped future with: " << e.what()
              << "\n";
  }

  auto chain_head = c10::make_intrusive<Future>(c10::TensorType::get());
  auto chain_tail = torch_ext::wrap_future(chain_head);
  for (int i = 1; i < 1000000; ++i) {
    chain_tail = torch_ext::wrap_future(chain_tail);
  }
  chain_head->markCompleted(torch::zeros({1}));
  std::cout << "a chain of 1,000,000 wrapped futures completed: "
            << chain_tail->completed() << "\n";
  return 0;
}
