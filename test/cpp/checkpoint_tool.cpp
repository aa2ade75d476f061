// Run by test/test_checkpoint_file.py: what C++ sees of a checkpoint file.
//   checkpoint_tool describe FILE   prints the kind of the value, then each
//                                   top-level key in order
//   checkpoint_tool resave IN OUT   reads IN and writes what it read to OUT
#include <torch_ext/checkpoint_file.h>
#include <torch_ext/checkpoint_values.h>

#include <iostream>
#include <string>

namespace {

const char* kind_name(const c10::IValue& value) {
  switch (*torch_ext::value_kind(value)) {
    case torch_ext::ValueKind::Dict:
      return "Dict";
    case torch_ext::ValueKind::OrderedDict:
      return "OrderedDict";
    default:
      return "other";
  }
}

} // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "describe" && argc == 3) {
    const c10::IValue value = torch_ext::read_checkpoint_file(argv[2]);
    std::cout << kind_name(value) << "\n";
    for (const auto& entry : value.toGenericDict()) {
      std::cout << entry.key().toStringRef() << "\n";
    }
    return 0;
  }
  if (command == "resave" && argc == 4) {
    torch_ext::write_checkpoint_file(argv[3], torch_ext::read_checkpoint_file(argv[2]));
    return 0;
  }
  std::cerr << "usage: checkpoint_tool describe FILE | resave IN OUT\n";
  return 2;
}
