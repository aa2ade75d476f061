// The one key-path syntax (torch_ext/csrc/state/key_path.h): DCP's flattened
// keys, printed by KeyPath and read by read_step.
#include "torch_ext/csrc/state/key_path.h"

#include <string>

#include <gtest/gtest.h>

namespace {

using torch_ext::detail::KeyPath;
using torch_ext::detail::PathStep;
using torch_ext::detail::read_step;

TEST(KeyPathTest, PrintsKeysAndIndicesJoinedByDotsAsDcpFlattensThem) {
  KeyPath path;
  EXPECT_EQ(path.str(), "");
  EXPECT_EQ(path.describe(), "the state_dict");
  path.push_key(std::string("optim"));
  path.push_key(std::string("state"));
  path.push_key(std::string("0.weight"));
  path.push_key(std::string("exp_avg"));
  EXPECT_EQ(path.str(), "optim.state.0.weight.exp_avg"); // ".".join(map(str, path))
  path.pop();
  path.pop();
  path.push_key(c10::IValue(int64_t{3}));
  path.push_index(1);
  EXPECT_EQ(path.str(), "optim.state.3.1");
  EXPECT_EQ(path.depth(), 4u);
  EXPECT_EQ(path.describe(), "state_dict entry 'optim.state.3.1'");
}

TEST(KeyPathTest, PrintsKeysOfEveryTypeAsPythonsStr) {
  const auto text = [](const c10::IValue& key) {
    KeyPath path;
    path.push_key(key);
    return path.str();
  };
  EXPECT_EQ(text(c10::IValue(true)), "True");
  EXPECT_EQ(text(c10::IValue(int64_t{-7})), "-7");
  EXPECT_EQ(text(c10::IValue(2.5)), "2.5");
  EXPECT_EQ(text(c10::IValue(1.0)), "1.0");
  EXPECT_EQ(text(c10::IValue(0.1)), "0.1");
  EXPECT_EQ(text(c10::IValue(std::string("a.b"))), "a.b");
}

TEST(KeyPathTest, AnEmptyFirstKeyIsAStepOfItsOwn) {
  KeyPath path("optim_state_dict");
  path.push_key(std::string(""));
  EXPECT_EQ(path.str(), "");
  EXPECT_EQ(path.describe(), "optim_state_dict entry ''");
  path.push_key(std::string("x"));
  EXPECT_EQ(path.str(), ".x");
  path.pop();
  path.pop();
  EXPECT_EQ(path.describe(), "the optim_state_dict");
}

TEST(KeyPathTest, ReadsAPathOneStepAtATime) {
  EXPECT_EQ(read_step("model", "model").kind, PathStep::kEntry);
  const PathStep below = read_step("model.fc.weight", "model");
  EXPECT_EQ(below.kind, PathStep::kBelow);
  EXPECT_EQ(below.rest, "fc.weight");
  // A key that holds dots takes them with it.
  EXPECT_EQ(read_step("model.fc.weight", "model.fc").rest, "weight");
  EXPECT_EQ(read_step("fc.weight", "fc.weight").kind, PathStep::kEntry);
  // Only at a dot.
  EXPECT_EQ(read_step("models.x", "model").kind, PathStep::kMiss);
  EXPECT_EQ(read_step("mode", "model").kind, PathStep::kMiss);
  EXPECT_EQ(read_step("0", "1").kind, PathStep::kMiss);
  EXPECT_EQ(read_step("", "").kind, PathStep::kEntry);
  EXPECT_EQ(read_step(".x", "").rest, "x");
}

} // namespace
