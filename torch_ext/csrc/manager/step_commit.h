#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <torch_ext/export.h>

namespace torch_ext::detail {

// The commit rule of CheckpointManager, stated once: listing, loading,
// retention and the start-up clean-up all ask it. A step lives in
// `<root>/step_<step>/`; it is committed once that folder holds the commit
// file, which is written last, durably (a temporary file, fsync'd, renamed,
// both folders fsync'd). Un-committing removes the commit file durably
// before anything else, so a step half deleted by a crash is never listed.

// `<root>/step_<step>`.
TORCH_EXT_API std::string step_path(const std::string& root, int64_t step);

// The step a folder name stands for: `step_<n>` with n written as
// std::to_string writes it (no sign, no leading zeros); nullopt otherwise.
TORCH_EXT_API std::optional<int64_t> step_of_folder_name(const std::string& name);

TORCH_EXT_API bool is_committed(const std::string& root, int64_t step);

// The committed steps under `root`, ascending; none if `root` is missing.
TORCH_EXT_API std::vector<int64_t> committed_steps(const std::string& root);

// A step folder under a root as it is on disk, committed or not: what
// `torch_ext info` and `torch_ext verify` show of a root.
struct StepFolder {
  int64_t step = 0;
  std::string path;
  bool committed = false;
  // The commit file, when committed; empty otherwise.
  std::string commit_file;
  // The ranks its commit file says wrote the step; nullopt when it is not
  // committed or its commit file says nothing this rule wrote.
  std::optional<int64_t> world_size;
  // checkpoint_file_path(path, rank) of each of those ranks.
  std::vector<std::string> rank_files;
};

// Every step folder under `root`, ascending; none if `root` is missing.
// Reads the listing and the commit files, nothing else.
TORCH_EXT_API std::vector<StepFolder> step_folders(const std::string& root);

// Commits `step`, whose rank files are all durable. Throws, naming the
// commit file, if it cannot.
TORCH_EXT_API void commit_step(const std::string& root, int64_t step, int64_t world_size);

// Un-commits `step` durably, if committed, then removes its folder, if any.
TORCH_EXT_API void delete_step(const std::string& root, int64_t step);

// Removes what a crash leaves under `root`: step folders without a commit
// file, and temporary files in `root` and in committed step folders.
// Committed steps and anything that is not a step folder stay. Best effort:
// what cannot be removed is returned, with why, for the caller to report.
TORCH_EXT_API std::vector<std::string> remove_crash_leftovers(const std::string& root);

} // namespace torch_ext::detail
