#include "torch_ext/csrc/manager/retention.h"

#include <cstdint>
#include <optional>
#include <vector>

#include <gtest/gtest.h>

namespace {

using Steps = std::vector<int64_t>;

// Which of `committed` retention deletes right after `saved` was committed.
Steps deleted(
    const Steps& committed,
    int64_t saved,
    std::optional<int64_t> max_to_keep,
    std::optional<int64_t> keep_every_n_steps = std::nullopt) {
  torch_ext::CheckpointManagerOptions options;
  options.max_to_keep = max_to_keep;
  options.keep_every_n_steps = keep_every_n_steps;
  return torch_ext::detail::steps_to_delete(committed, saved, options);
}

TEST(RetentionTest, WithoutMaxToKeepNothingIsDeleted) {
  EXPECT_EQ(deleted({1, 2, 3, 4}, 4, std::nullopt), Steps{});
  EXPECT_EQ(deleted({1, 2, 3, 4}, 4, std::nullopt, /*keep_every_n_steps=*/2), Steps{});
}

TEST(RetentionTest, AtMostMaxToKeepStepsAreAllKept) {
  EXPECT_EQ(deleted({}, 0, 1), Steps{});
  EXPECT_EQ(deleted({7}, 7, 1), Steps{});
  EXPECT_EQ(deleted({1, 2, 3}, 3, 3), Steps{});
}

TEST(RetentionTest, AllButTheNewestMaxToKeepAreDeletedOldestFirst) {
  EXPECT_EQ(deleted({1, 2, 3, 4, 5}, 5, 2), (Steps{1, 2, 3}));
  EXPECT_EQ(deleted({1, 2}, 2, 1), Steps{1});
  EXPECT_EQ(deleted({10, 20, 30}, 30, 1), (Steps{10, 20}));
}

TEST(RetentionTest, MultiplesOfKeepEveryNStepsAreSpared) {
  EXPECT_EQ(deleted({1, 2, 3, 4, 5, 6, 7}, 7, 1, 3), (Steps{1, 2, 4, 5}));
  // Step 0 is a multiple of every n.
  EXPECT_EQ(deleted({0, 1, 2}, 2, 1, 5), Steps{1});
}

TEST(RetentionTest, SparedStepsTakeNoPlaceOfTheNewestMaxToKeep) {
  // 2 and 4 are spared, and 5 and 6 are still the newest two kept.
  EXPECT_EQ(deleted({2, 3, 4, 5, 6}, 6, 2, 2), Steps{3});
  // A spared step among the newest counts as one of them.
  EXPECT_EQ(deleted({1, 2, 3, 4}, 4, 2, 4), (Steps{1, 2}));
}

TEST(RetentionTest, TheStepJustSavedIsSparedWhenOlderThanTheNewest) {
  // Step 5 saved after step 10: deleting it would lose the save just made.
  EXPECT_EQ(deleted({5, 10}, 5, 1), Steps{});
  EXPECT_EQ(deleted({1, 5, 10}, 5, 1), Steps{1});
  // Once a newer step is saved, it goes as any other.
  EXPECT_EQ(deleted({5, 10, 11}, 11, 1), (Steps{5, 10}));
}

} // namespace
