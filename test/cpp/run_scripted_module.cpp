// Loads a TorchScript module saved from Python, calls its forward() on
// torch.ones(n) and prints the result, or "error: <message>" with exit 1.
#include <cstdlib>
#include <iostream>

#include <torch/script.h>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: run_scripted_module <module.pt> <n>\n";
    return 2;
  }
  try {
    torch::jit::Module module = torch::jit::load(argv[1]);
    c10::IValue out = module.forward({torch::ones({std::atoi(argv[2])})});
    std::cout << "result: " << out << std::endl;
  } catch (const c10::Error& e) {
    std::cout << "error: " << e.what_without_backtrace() << std::endl;
    return 1;
  } catch (const std::exception& e) { // a failed wait throws Future::FutureError
    std::cout << "error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
