// Run by test/test_safetensors.py: what C++ sees of safetensors files.
//   safetensors_tool dump PATH        a file or a Hugging Face folder: one line
//                                     per tensor in its order, `name dtype
//                                     shape hex-bytes`, then `metadata key value`
//                                     lines; exits 3 if a CRC32 fails
//   safetensors_tool resave IN OUT    reads the file IN, writes what it read
//                                     (and its metadata) to the file OUT
//   safetensors_tool resave-folder IN OUT MAX_SHARD_SIZE
#include <torch_ext/safetensors.h>

#include <sys/stat.h>

#include <cstdio>
#include <iostream>
#include <string>

namespace {

bool is_folder(const std::string& path) {
  struct stat status {};
  return ::stat(path.c_str(), &status) == 0 && S_ISDIR(status.st_mode);
}

void dump(const c10::impl::GenericDict& tensors) {
  for (const auto& entry : tensors) {
    const at::Tensor tensor = entry.value().toTensor().contiguous();
    std::cout << entry.key().toStringRef() << " " << c10::toString(tensor.scalar_type()) << " [";
    for (int64_t d = 0; d < tensor.dim(); ++d) {
      std::cout << (d ? "," : "") << tensor.size(d);
    }
    std::cout << "] ";
    const auto* bytes = static_cast<const unsigned char*>(tensor.const_data_ptr());
    for (size_t i = 0; i < tensor.nbytes(); ++i) {
      char hex[3];
      std::snprintf(hex, sizeof(hex), "%02x", bytes[i]);
      std::cout << hex;
    }
    std::cout << "\n";
  }
}

} // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "dump" && argc == 3) {
    if (is_folder(argv[2])) {
      const torch_ext::SafetensorsFolder folder(argv[2]);
      dump(folder.load());
      return folder.verify().ok() ? 0 : 3;
    }
    const torch_ext::SafetensorsFile file(argv[2]);
    dump(file.load());
    for (const auto& [key, value] : file.metadata()) {
      std::cout << "metadata " << key << " " << value << "\n";
    }
    return file.verify().ok() ? 0 : 3;
  }
  if (command == "resave" && argc == 4) {
    const torch_ext::SafetensorsFile file(argv[2]);
    torch_ext::write_safetensors_file(argv[3], file.load(), file.metadata());
    return 0;
  }
  if (command == "resave-folder" && argc == 5) {
    torch_ext::write_safetensors_folder(
        argv[3], torch_ext::SafetensorsFolder(argv[2]).load(), std::stoull(argv[4]));
    return 0;
  }
  std::cerr << "usage: safetensors_tool dump PATH | resave IN OUT | resave-folder IN OUT MAX_SHARD_SIZE\n";
  return 2;
}
