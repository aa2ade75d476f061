#include "torch_ext/csrc/manager/step_commit.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include "test_files.h"

namespace {

namespace fs = std::filesystem;
using namespace torch_ext::detail;
using Names = std::vector<std::string>;
using Steps = std::vector<int64_t>;

class StepCommitTest : public torch_ext_test::TempFolderTest {
 protected:
  std::string root() const {
    return TempFolderTest::root().string();
  }
  std::string at(const std::string& relative) const {
    return path(relative);
  }
  void file(const std::string& relative, const std::string& text = "data") const {
    fs::create_directories(fs::path(at(relative)).parent_path());
    std::ofstream(at(relative)) << text;
  }
  // A step whose ranks wrote their files, committed or not.
  void step(int64_t number, bool committed, int64_t world_size = 1) const {
    for (int64_t rank = 0; rank < world_size; ++rank) {
      file("step_" + std::to_string(number) + "/checkpoint_" + std::to_string(rank) + ".pt");
    }
    if (committed) {
      commit_step(root(), number, world_size);
    }
  }
  Names names_in(const std::string& relative) const {
    Names names;
    for (const auto& entry : fs::directory_iterator(at(relative))) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

};

TEST_F(StepCommitTest, AStepLivesInTheFolderStepUnderscoreItsNumber) {
  EXPECT_EQ(step_path(root(), 7), at("step_7"));
  EXPECT_EQ(step_path(root(), 0), at("step_0"));
}

TEST_F(StepCommitTest, AFolderNameStandsForAStepOnlyAsStdToStringWritesIt) {
  EXPECT_EQ(step_of_folder_name("step_0"), 0);
  EXPECT_EQ(step_of_folder_name("step_7"), 7);
  EXPECT_EQ(step_of_folder_name("step_123456789012345678"), 123456789012345678);
  for (const std::string name :
       {"", "step_", "step_007", "step_00", "step_-1", "step_+1", "step_1a", "step_ 1", "step_1 ", "Step_1",
        "step1", "step_1.tmp", "step_1234567890123456789", "checkpoint_1"}) {
    EXPECT_EQ(step_of_folder_name(name), std::nullopt) << "'" << name << "'";
  }
}

TEST_F(StepCommitTest, AStepIsCommittedOnceItsCommitFileIsWrittenWithNoTemporaryLeft) {
  step(3, /*committed=*/false, /*world_size=*/2);
  EXPECT_FALSE(is_committed(root(), 3));
  commit_step(root(), 3, 2);
  EXPECT_TRUE(is_committed(root(), 3));
  EXPECT_EQ(names_in("step_3"), (Names{"checkpoint_0.pt", "checkpoint_1.pt", "commit_success.txt"}));
  std::ifstream commit_file(at("step_3/commit_success.txt"));
  std::stringstream text;
  text << commit_file.rdbuf();
  EXPECT_EQ(text.str(), "step 3\nworld_size 2\n");
}

TEST_F(StepCommitTest, CommittingAStepWithoutItsFolderThrowsNamingTheCommitFile) {
  try {
    commit_step(root(), 9, 1);
    FAIL() << "committed a step that has no folder";
  } catch (const c10::Error& e) {
    const std::string message = e.what_without_backtrace();
    EXPECT_NE(message.find(at("step_9/commit_success.txt")), std::string::npos) << message;
  }
  EXPECT_FALSE(is_committed(root(), 9));
}

TEST_F(StepCommitTest, TheListingHoldsTheCommittedStepsAscendingAndNothingElse) {
  step(10, true);
  step(2, true);
  step(9, true);
  step(3, false); // in mid-save: every file but the commit file
  step(4, false);
  file("step_4/.commit_success.txt.4242.0.tmp", "step 4\n"); // in mid-commit
  fs::create_directories(at("step_5/commit_success.txt")); // a folder, not the commit file
  file("step_6", "a file, not a step's folder");
  step(7, true);
  fs::rename(at("step_7"), at("step_007")); // not step 7's folder
  file("notes.txt");
  fs::create_directories(at("step_x"));
  EXPECT_EQ(committed_steps(root()), (Steps{2, 9, 10}));
  for (const int64_t step : {3, 4, 5, 6, 7, 8}) {
    EXPECT_FALSE(is_committed(root(), step)) << step;
  }
}

TEST_F(StepCommitTest, AMissingRootHoldsNoStepAndARootThatIsAFileCannotBeListed) {
  EXPECT_EQ(committed_steps(at("missing")), Steps{});
  file("a_file");
  try {
    committed_steps(at("a_file"));
    FAIL() << "listed a regular file as a root";
  } catch (const c10::Error& e) {
    const std::string message = e.what_without_backtrace();
    EXPECT_NE(message.find("cannot list the checkpoint root '" + at("a_file") + "'"), std::string::npos) << message;
  }
}

TEST_F(StepCommitTest, DeletingAStepUncommitsItAndRemovesItsFolderAlone) {
  step(1, true);
  step(2, true);
  delete_step(root(), 1);
  EXPECT_FALSE(is_committed(root(), 1));
  EXPECT_FALSE(fs::exists(at("step_1")));
  EXPECT_EQ(committed_steps(root()), Steps{2});
  step(3, false);
  delete_step(root(), 3); // an uncommitted step's folder goes too
  EXPECT_FALSE(fs::exists(at("step_3")));
  delete_step(root(), 4); // a step that is not there: nothing to do
  EXPECT_EQ(names_in(""), Names{"step_2"});
}

// What a crash leaves: step folders without their commit file (in mid-save,
// half deleted, in mid-commit) and temporary files.
TEST_F(StepCommitTest, CrashLeftoversAreRemovedAndEverythingElseStays) {
  step(1, true);
  file("step_1/.checkpoint_1.pt.4242.1.tmp", "a stale temporary in a committed step");
  file("step_1/notes.txt");
  step(7, false); // in mid-save
  file("step_8/.checkpoint_0.pt.4242.3.tmp", "partial"); // half deleted: the commit file went first
  step(9, false);
  file("step_9/.commit_success.txt.4242.0.tmp", "step 9\n"); // in mid-commit
  file(".stray.4242.2.tmp", "stale");
  // Not the manager's.
  file("notes.txt");
  file("step_12", "a file named as a step");
  file("step_007/.checkpoint_0.pt.4242.4.tmp");
  fs::create_directories(at("step_x"));

  EXPECT_EQ(remove_crash_leftovers(root()), Names{});
  EXPECT_EQ(names_in(""), (Names{"notes.txt", "step_007", "step_1", "step_12", "step_x"}));
  EXPECT_EQ(names_in("step_1"), (Names{"checkpoint_0.pt", "commit_success.txt", "notes.txt"}));
  EXPECT_EQ(names_in("step_007"), Names{".checkpoint_0.pt.4242.4.tmp"});
  EXPECT_EQ(committed_steps(root()), Steps{1});
}

TEST_F(StepCommitTest, AMissingRootHasNoLeftoversAndIsNotCreated) {
  EXPECT_EQ(remove_crash_leftovers(at("missing")), Names{});
  EXPECT_FALSE(fs::exists(at("missing")));
}

} // namespace
