#pragma once

#include <sys/types.h>

#include <string>

namespace torch_ext::detail {

// What a file of mode `mode` (stat's st_mode) is, for an error: "a regular
// file", "a folder", "a FIFO (named pipe)", "a character device", ...
std::string describe_file_type(mode_t mode);

} // namespace torch_ext::detail
