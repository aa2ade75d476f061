// Run by test/test_dcp_format.py: DCP checkpoints read and written by C++.
//   dcp_tool to_torch_save DIR FILE    read_dcp_checkpoint(DIR), written to FILE
//   dcp_tool from_torch_save FILE DIR  read_checkpoint_file(FILE), written as a
//                                      DCP checkpoint into DIR (4 threads)
#include <torch_ext/checkpoint_file.h>
#include <torch_ext/dcp.h>

#include <iostream>
#include <string>

int main(int argc, char** argv) {
  const std::string command = argc == 4 ? argv[1] : "";
  if (command == "to_torch_save") {
    torch_ext::write_checkpoint_file(argv[3], torch_ext::read_dcp_checkpoint(argv[2]));
    return 0;
  }
  if (command == "from_torch_save") {
    torch_ext::write_dcp_checkpoint(argv[3], torch_ext::read_checkpoint_file(argv[2]), {/*thread_count=*/4});
    return 0;
  }
  std::cerr << "usage: dcp_tool to_torch_save DIR FILE | from_torch_save FILE DIR\n";
  return 2;
}
