#include "torch_ext/csrc/state/select_keys.h"

#include <string>
#include <vector>

#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <torch_ext/checkpoint_values.h>

namespace {

using c10::impl::GenericDict;
using c10::impl::GenericList;
using torch_ext::detail::select_keys;

GenericDict str_dict() {
  return GenericDict(c10::StringType::get(), c10::AnyType::get());
}

// {"model": OrderedDict{"fc.weight", "fc.bias"} with _metadata,
//  "optim": {"state": {0: {"step"}, 1: {"step"}}, "param_groups": [{"lr"}]},
//  "shape": torch.Size([2, 3]), "pair": (1, "two"), "keys": {2.5: "float", True: "bool"},
//  "step": 7}
GenericDict sample_state() {
  GenericDict model = str_dict();
  model.insert("fc.weight", torch::ones({2, 3}));
  model.insert("fc.bias", torch::zeros({2}));
  GenericDict metadata = str_dict();
  metadata.insert("version", int64_t{1});
  GenericDict attributes = str_dict();
  attributes.insert("_metadata", metadata);
  torch_ext::mark_ordered_dict(model, attributes);

  GenericDict param_state(c10::IntType::get(), c10::AnyType::get());
  for (const int64_t param : {0, 1}) {
    GenericDict entry = str_dict();
    entry.insert("step", param + 10);
    param_state.insert(param, entry);
  }
  GenericDict group = str_dict();
  group.insert("lr", 0.5);
  GenericList groups(c10::AnyType::get());
  groups.push_back(group);
  GenericDict optim = str_dict();
  optim.insert("state", param_state);
  optim.insert("param_groups", groups);

  GenericDict keys(c10::AnyType::get(), c10::AnyType::get());
  keys.insert(2.5, std::string("float"));
  keys.insert(true, std::string("bool"));

  GenericDict state = str_dict();
  state.insert("model", model);
  state.insert("optim", optim);
  state.insert("shape", torch_ext::make_size({2, 3}));
  state.insert("pair", c10::ivalue::Tuple::create({int64_t{1}, std::string("two")}));
  state.insert("keys", keys);
  state.insert("step", int64_t{7});
  return state;
}

GenericDict selected(const std::vector<std::string>& keys) {
  return select_keys(sample_state(), keys, "ckpt.pt").toGenericDict();
}

std::vector<std::string> keys_of(const GenericDict& dict) {
  std::vector<std::string> keys;
  for (const auto& entry : dict) {
    keys.push_back(entry.key().isString() ? entry.key().toStringRef() : entry.key().tagKind());
  }
  return keys;
}

std::string error_of(const std::vector<std::string>& keys) {
  try {
    select_keys(sample_state(), keys, "ckpt.pt");
  } catch (const c10::ValueError& e) {
    return e.what_without_backtrace();
  }
  return "no ValueError";
}

TEST(SelectKeysTest, AKeyNamingAContainerSelectsAllOfIt) {
  const GenericDict result = selected({"optim"});
  EXPECT_EQ(keys_of(result), std::vector<std::string>{"optim"});
  const GenericDict optim = result.at("optim").toGenericDict();
  EXPECT_EQ(keys_of(optim), (std::vector<std::string>{"state", "param_groups"}));
  EXPECT_EQ(optim.at("state").toGenericDict().size(), 2u);
}

TEST(SelectKeysTest, DottedPathsNameEntriesOfEntriesAndContainersHoldOnlyWhatWasNamed) {
  const GenericDict result = selected({"optim.param_groups.0.lr", "step"});
  EXPECT_EQ(keys_of(result), (std::vector<std::string>{"optim", "step"}));
  const GenericDict optim = result.at("optim").toGenericDict();
  EXPECT_EQ(keys_of(optim), std::vector<std::string>{"param_groups"});
  EXPECT_EQ(optim.at("param_groups").toList().get(0).toGenericDict().at("lr").toDouble(), 0.5);
  EXPECT_EQ(result.at("step").toInt(), 7);
}

TEST(SelectKeysTest, ADictKeyMayHoldDotsItself) {
  const GenericDict model = selected({"model.fc.bias"}).at("model").toGenericDict();
  ASSERT_EQ(model.size(), 1u);
  EXPECT_TRUE(torch::equal(model.at("fc.bias").toTensor(), torch::zeros({2})));
}

TEST(SelectKeysTest, KeysThatAreNotStringsAreMatchedAsTheyArePrinted) {
  const GenericDict result = selected({"optim.state.1.step", "keys.2.5", "keys.True"});
  const GenericDict param_state = result.at("optim").toGenericDict().at("state").toGenericDict();
  ASSERT_EQ(param_state.size(), 1u);
  EXPECT_EQ(param_state.keyType()->kind(), c10::TypeKind::IntType); // the dict's key type is kept
  EXPECT_EQ(param_state.at(int64_t{1}).toGenericDict().at("step").toInt(), 11);
  const GenericDict keys = result.at("keys").toGenericDict();
  EXPECT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys.at(2.5).toStringRef(), "float");
  EXPECT_EQ(keys.at(true).toStringRef(), "bool");
}

TEST(SelectKeysTest, ContainersKeepTheirKindOrderAndMarks) {
  const GenericDict result = selected({"shape.1", "pair.1", "model.fc.bias", "model.fc.weight"});
  // A torch.Size stays one, a tuple a tuple.
  EXPECT_EQ(torch_ext::value_kind(result.at("shape")), torch_ext::ValueKind::Size);
  ASSERT_EQ(result.at("shape").toTupleRef().elements().size(), 1u);
  EXPECT_EQ(result.at("shape").toTupleRef().elements()[0].toInt(), 3);
  EXPECT_EQ(torch_ext::value_kind(result.at("pair")), torch_ext::ValueKind::Tuple);
  EXPECT_EQ(result.at("pair").toTupleRef().elements()[0].toStringRef(), "two");
  // An OrderedDict stays one, with its attributes, in the file's order.
  const std::optional<GenericDict> attributes = torch_ext::ordered_dict_attributes(result.at("model"));
  ASSERT_TRUE(attributes.has_value());
  EXPECT_EQ(attributes->at("_metadata").toGenericDict().at("version").toInt(), 1);
  EXPECT_EQ(keys_of(result.at("model").toGenericDict()), (std::vector<std::string>{"fc.weight", "fc.bias"}));
  // The state's own order, not the keys'.
  EXPECT_EQ(keys_of(selected({"step", "model"})), (std::vector<std::string>{"model", "step"}));
}

// The error for keys that name nothing: the file, the keys, and what a key
// path is.
std::string no_entry(const std::string& keys) {
  return "the checkpoint file 'ckpt.pt' has no entry " + keys +
      "; keys are paths as errors print them: the dict keys and list indices on the way to the entry, joined by "
      "dots (`model.fc.weight`, `optim.param_groups.0.lr`)";
}

TEST(SelectKeysTest, KeysThatNameNothingAreAllNamedWithTheFile) {
  EXPECT_EQ(error_of({"model.fc.bias", "model.nothing", "nowhere"}), no_entry("'model.nothing', 'nowhere'"));
  // Below a value that is no container, past the end of a list or tuple, or
  // a prefix of a key.
  EXPECT_EQ(error_of({"step.0"}), no_entry("'step.0'"));
  EXPECT_EQ(error_of({"optim.param_groups.1"}), no_entry("'optim.param_groups.1'"));
  EXPECT_EQ(error_of({"pair.-1"}), no_entry("'pair.-1'"));
  EXPECT_EQ(error_of({"model.fc"}), no_entry("'model.fc'"));
  EXPECT_EQ(error_of({"opt"}), no_entry("'opt'"));
  // Another syntax than the errors' names nothing.
  EXPECT_EQ(error_of({"optim[\"param_groups\"][0]"}), no_entry("'optim[\"param_groups\"][0]'"));
}

TEST(SelectKeysTest, AKeyAndAKeyBelowItBothNameSomething) {
  const GenericDict optim = selected({"optim", "optim.param_groups.0.lr"}).at("optim").toGenericDict();
  EXPECT_EQ(keys_of(optim), (std::vector<std::string>{"state", "param_groups"})); // all of it
}

// '' is the path of the entry keyed '', as KeyPath prints it.
TEST(SelectKeysTest, AnEmptyKeyNamesTheEntryKeyedEmpty) {
  EXPECT_EQ(error_of({"step", ""}), no_entry("''"));
  GenericDict inner = str_dict();
  inner.insert("x", int64_t{1});
  GenericDict state = str_dict();
  state.insert("", inner);
  state.insert("y", int64_t{2});
  const GenericDict result = select_keys(state, {".x"}, "ckpt.pt").toGenericDict();
  EXPECT_EQ(keys_of(result), std::vector<std::string>{""});
  EXPECT_EQ(result.at("").toGenericDict().at("x").toInt(), 1);
  EXPECT_EQ(keys_of(select_keys(state, {""}, "ckpt.pt").toGenericDict()), std::vector<std::string>{""});
}

} // namespace
