#include <torch_ext/checkpoint_file.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include <c10/util/Exception.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/csrc/jit/serialization/pickler.h>

namespace torch_ext {
namespace {

std::string describe_errno(int error) {
  return std::strerror(error);
}

// A file descriptor that is closed, and its file removed, unless committed.
class TemporaryFile {
 public:
  explicit TemporaryFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    TORCH_CHECK(
        fd_ >= 0,
        "cannot create the checkpoint file '",
        path_,
        "': ",
        describe_errno(errno));
  }
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  ~TemporaryFile() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    if (!committed_) {
      ::unlink(path_.c_str());
    }
  }

  // PyTorchStreamWriter's sink. miniz is C: nothing may be thrown through
  // it, so the first error is kept, the rest of the archive is discarded and
  // check_written() reports it.
  size_t write(const void* data, size_t size) {
    const char* bytes = static_cast<const char*>(data);
    size_t left = error_ == 0 ? size : 0;
    while (left > 0) {
      const size_t chunk = std::min(left, kWritebackBytes);
      ssize_t written = ::write(fd_, bytes, chunk);
      if (written < 0) {
        if (errno == EINTR) {
          continue;
        }
        error_ = errno;
        break;
      }
      start_writeback(static_cast<size_t>(written));
      bytes += written;
      left -= static_cast<size_t>(written);
    }
    return size;
  }

  void check_written(const std::string& final_path) const {
    TORCH_CHECK(
        error_ == 0,
        "writing the checkpoint file '",
        final_path,
        "' failed: ",
        describe_errno(error_),
        "; the previous checkpoint, if any, is left as it was");
  }

  void sync_and_commit(const std::string& final_path) {
    TORCH_CHECK(
        ::fsync(fd_) == 0,
        "fsync of the checkpoint file '",
        final_path,
        "' failed: ",
        describe_errno(errno));
    const int fd = std::exchange(fd_, -1);
    TORCH_CHECK(
        ::close(fd) == 0,
        "closing the checkpoint file '",
        final_path,
        "' failed: ",
        describe_errno(errno));
    TORCH_CHECK(
        ::rename(path_.c_str(), final_path.c_str()) == 0,
        "cannot rename '",
        path_,
        "' to the checkpoint file '",
        final_path,
        "': ",
        describe_errno(errno));
    committed_ = true;
  }

 private:
  // Starts the disk writing what is written so far, every kWritebackBytes,
  // so that the disk works while we still copy and the final fsync waits
  // only for the tail. A hint: fsync reports the errors.
  void start_writeback(size_t written) {
    unsynced_ += written;
    if (unsynced_ >= kWritebackBytes) {
#ifdef __linux__
      ::sync_file_range(fd_, synced_, unsynced_, SYNC_FILE_RANGE_WRITE);
#endif
      synced_ += unsynced_;
      unsynced_ = 0;
    }
  }

  static constexpr size_t kWritebackBytes = size_t{8} << 20;
  std::string path_;
  int fd_ = -1;
  off_t synced_ = 0;
  size_t unsynced_ = 0;
  int error_ = 0;
  bool committed_ = false;
};

void fsync_folder(const std::string& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  TORCH_CHECK(
      fd >= 0,
      "cannot open the checkpoint folder '",
      folder,
      "' to fsync it: ",
      describe_errno(errno));
  const int result = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  TORCH_CHECK(
      result == 0,
      "fsync of the checkpoint folder '",
      folder,
      "' failed: ",
      describe_errno(error));
}

std::string temporary_path_for(const std::string& final_path) {
  static std::atomic<uint64_t> counter{0};
  const std::filesystem::path target(final_path);
  return (target.parent_path() /
          ("." + target.filename().string() + "." + std::to_string(::getpid()) +
           "." + std::to_string(counter++) + ".tmp"))
      .string();
}

std::vector<char> pickle_with_tensors(
    const c10::IValue& state_dict,
    std::vector<at::Tensor>* tensors) {
  std::vector<char> bytes;
  // No type tags: torch.load(weights_only=True), which upstream's
  // CheckpointReader uses, refuses torch.jit._pickle.restore_type_tag.
  torch::jit::Pickler pickler(
      [&](const char* data, size_t size) {
        bytes.insert(bytes.end(), data, data + size);
      },
      /*tensor_table=*/nullptr,
      /*type_renamer=*/nullptr,
      /*memoized_class_types=*/nullptr,
      /*get_tensor_id=*/nullptr,
      /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(state_dict);
  pickler.stop();
  *tensors = pickler.tensorData();
  return bytes;
}

} // namespace

std::string checkpoint_file_path(const std::string& path, int64_t rank) {
  return (std::filesystem::path(path) /
          ("checkpoint_" + std::to_string(rank) + ".pt"))
      .string();
}

void write_checkpoint(
    const std::string& path,
    int64_t rank,
    const c10::IValue& state_dict) {
  TORCH_CHECK_TYPE(
      state_dict.isGenericDict(),
      "write_checkpoint expected the state_dict to be a dict, got ",
      state_dict.tagKind());
  TORCH_CHECK_VALUE(
      !path.empty(), "write_checkpoint expected a checkpoint folder, got ''");
  const std::string final_path = checkpoint_file_path(path, rank);
  std::error_code error;
  std::filesystem::create_directories(path, error);
  TORCH_CHECK(
      !error,
      "cannot create the checkpoint folder '",
      path,
      "' for '",
      final_path,
      "': ",
      error.message());

  std::vector<at::Tensor> tensors;
  const std::vector<char> pickle = pickle_with_tensors(state_dict, &tensors);
  for (const at::Tensor& tensor : tensors) {
    TORCH_CHECK(
        tensor.device().is_cpu(),
        "write_checkpoint expected CPU tensors, got one on ",
        tensor.device(),
        " for '",
        final_path,
        "'");
  }

  TemporaryFile file(temporary_path_for(final_path));
  {
    // Without CRC32s, as torch.save with compute_crc32=False: torch.load
    // does not check them, and computing them is a second pass over every
    // byte that costs about as much as writing it.
    caffe2::serialize::PyTorchStreamWriter archive(
        [&file](const void* data, size_t size) {
          return file.write(data, size);
        },
        /*compute_crc32=*/false);
    // The records torch.save writes, in its order.
    archive.writeRecord("data.pkl", pickle.data(), pickle.size());
    archive.writeRecord(".format_version", "1", 1);
    archive.writeRecord(".storage_alignment", "64", 2);
    archive.writeRecord("byteorder", "little", 6);
    for (size_t i = 0; i < tensors.size(); ++i) {
      const c10::Storage& storage = tensors[i].storage();
      archive.writeRecord(
          "data/" + std::to_string(i), storage.data(), storage.nbytes());
    }
    archive.writeEndOfFile();
  }
  file.check_written(final_path);
  file.sync_and_commit(final_path);
  fsync_folder(std::filesystem::path(final_path).parent_path().string());
}

c10::IValue read_checkpoint(const std::string& path, int64_t rank) {
  const std::string file = checkpoint_file_path(path, rank);
  TORCH_CHECK(
      std::filesystem::is_regular_file(file),
      "Checkpoint file not found at '",
      file,
      "'");
  caffe2::serialize::PyTorchStreamReader reader(file);
  return torch::jit::readArchiveAndTensors(
      /*archive_name=*/"data",
      /*pickle_prefix=*/"",
      /*tensor_prefix=*/"",
      /*type_resolver=*/std::nullopt,
      /*obj_loader=*/std::nullopt,
      /*device=*/at::Device(at::kCPU),
      reader);
}

} // namespace torch_ext
