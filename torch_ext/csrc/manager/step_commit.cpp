#include "step_commit.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <system_error>

#include <c10/util/Exception.h>

#include <torch_ext/checkpoint_file.h>

#include "torch_ext/csrc/io/durable_file.h"

namespace torch_ext::detail {
namespace {

namespace fs = std::filesystem;

constexpr const char* kStepPrefix = "step_";
// orbax's name for the same file.
constexpr const char* kCommitFileName = "commit_success.txt";

std::string commit_file(const std::string& root, int64_t step) {
  return (fs::path(step_path(root, step)) / kCommitFileName).string();
}

bool is_regular_file(const std::string& path) {
  std::error_code error;
  return fs::is_regular_file(path, error);
}

std::string commit_text(int64_t step, int64_t world_size) {
  return "step " + std::to_string(step) + "\nworld_size " + std::to_string(world_size) + "\n";
}

// The world size a commit file of `step` says, if it says what commit_step
// writes (a file of a few bytes: read whole).
std::optional<int64_t> committed_world_size(const std::string& path, int64_t step) {
  std::ifstream in(path, std::ios::binary);
  std::string text(64, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  const std::string prefix = "step " + std::to_string(step) + "\nworld_size ";
  if (text.compare(0, prefix.size(), prefix) != 0) {
    return std::nullopt;
  }
  const std::string digits = text.substr(prefix.size(), text.size() - prefix.size() - 1);
  if (digits.empty() || digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  const int64_t world_size = std::stoll(digits);
  return world_size > 0 && text == commit_text(step, world_size) ? std::optional<int64_t>(world_size) : std::nullopt;
}

} // namespace

std::string step_path(const std::string& root, int64_t step) {
  return (fs::path(root) / (kStepPrefix + std::to_string(step))).string();
}

std::optional<int64_t> step_of_folder_name(const std::string& name) {
  const std::string prefix = kStepPrefix;
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) {
    return std::nullopt;
  }
  const std::string digits = name.substr(prefix.size());
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  const int64_t step = std::stoll(digits);
  // One folder per step: `step_007` is not step 7's.
  if (std::to_string(step) != digits) {
    return std::nullopt;
  }
  return step;
}

bool is_committed(const std::string& root, int64_t step) {
  return is_regular_file(commit_file(root, step));
}

std::vector<int64_t> committed_steps(const std::string& root) {
  std::vector<int64_t> steps;
  std::error_code error;
  if (!fs::exists(root, error)) {
    return steps;
  }
  fs::directory_iterator entries(root, error);
  TORCH_CHECK(!error, "cannot list the checkpoint root '", root, "': ", error.message());
  for (const fs::directory_entry& entry : entries) {
    const std::optional<int64_t> step = step_of_folder_name(entry.path().filename().string());
    if (step && is_committed(root, *step)) {
      steps.push_back(*step);
    }
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

std::vector<StepFolder> step_folders(const std::string& root) {
  std::vector<StepFolder> steps;
  std::error_code error;
  if (!fs::exists(root, error)) {
    return steps;
  }
  fs::directory_iterator entries(root, error);
  TORCH_CHECK(!error, "cannot list the checkpoint root '", root, "': ", error.message());
  for (const fs::directory_entry& entry : entries) {
    const std::optional<int64_t> step = step_of_folder_name(entry.path().filename().string());
    std::error_code kind_error;
    if (!step || !entry.is_directory(kind_error)) {
      continue;
    }
    StepFolder folder;
    folder.step = *step;
    folder.path = step_path(root, *step);
    folder.committed = is_committed(root, *step);
    if (folder.committed) {
      folder.commit_file = commit_file(root, *step);
      folder.world_size = committed_world_size(folder.commit_file, *step);
      for (int64_t rank = 0; rank < folder.world_size.value_or(0); ++rank) {
        folder.rank_files.push_back(checkpoint_file_path(folder.path, rank));
      }
    }
    steps.push_back(std::move(folder));
  }
  std::sort(steps.begin(), steps.end(), [](const StepFolder& a, const StepFolder& b) { return a.step < b.step; });
  return steps;
}

void commit_step(const std::string& root, int64_t step, int64_t world_size) {
  const std::string path = commit_file(root, step);
  const std::string text = commit_text(step, world_size);
  DurableFile file(path);
  file.write(text.data(), text.size());
  file.commit();
  // The step folder's own entry in the root, made when the ranks created it.
  fsync_folder(root, path);
}

void delete_step(const std::string& root, int64_t step) {
  const std::string folder = step_path(root, step);
  std::error_code error;
  if (!fs::exists(folder, error)) {
    return;
  }
  const std::string path = commit_file(root, step);
  if (fs::remove(path, error)) {
    fsync_folder(folder, path);
  }
  TORCH_CHECK(!error, "cannot un-commit step ", step, " by removing '", path, "': ", error.message());
  fs::remove_all(folder, error);
  TORCH_CHECK(!error, "cannot remove '", folder, "': ", error.message());
  fsync_folder(root, folder);
}

std::vector<std::string> remove_crash_leftovers(const std::string& root) {
  std::vector<std::string> failures;
  auto remove = [&failures](const fs::path& path) {
    std::error_code error;
    fs::remove_all(path, error);
    if (error) {
      failures.push_back("'" + path.string() + "': " + error.message());
    }
  };
  // Listed first, removed after: a folder is not changed while it is read.
  auto list = [&failures](const fs::path& folder) {
    std::vector<fs::directory_entry> entries;
    std::error_code error;
    for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
      entries.push_back(*it);
    }
    if (error) {
      failures.push_back("'" + folder.string() + "': " + error.message());
    }
    return entries;
  };
  auto remove_temporaries = [&](const fs::path& folder) {
    for (const fs::directory_entry& entry : list(folder)) {
      if (DurableFile::is_temporary_name(entry.path().filename().string())) {
        remove(entry.path());
      }
    }
  };

  std::error_code error;
  if (!fs::is_directory(root, error)) {
    return failures;
  }
  for (const fs::directory_entry& entry : list(root)) {
    const std::optional<int64_t> step = step_of_folder_name(entry.path().filename().string());
    std::error_code kind_error;
    if (!step || !entry.is_directory(kind_error)) {
      continue;
    }
    if (is_committed(root, *step)) {
      remove_temporaries(entry.path());
    } else {
      remove(entry.path());
    }
  }
  remove_temporaries(root);
  try {
    fsync_folder(root, root);
  } catch (const c10::Error& e) {
    failures.push_back(e.what_without_backtrace());
  }
  return failures;
}

} // namespace torch_ext::detail
