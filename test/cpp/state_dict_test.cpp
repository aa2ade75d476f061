#include <torch_ext/checkpoint_file.h>
#include <torch_ext/checkpoint_values.h>
#include <torch_ext/state_dict.h>

#include <unistd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

namespace fs = std::filesystem;
namespace optim = torch::optim;
using c10::impl::GenericDict;
using c10::impl::GenericList;

// Own parameter and buffer registered after the children: Python's
// state_dict() still lists them first.
struct NetImpl : torch::nn::Module {
  NetImpl() {
    fc = register_module("fc", torch::nn::Linear(3, 4));
    bn = register_module("bn", torch::nn::BatchNorm1d(4));
    head = register_module(
        "head",
        torch::nn::Sequential(
            torch::nn::Linear(4, 4), torch::nn::ReLU(), torch::nn::Linear(torch::nn::LinearOptions(4, 2).bias(false))));
    scale = register_parameter("scale", torch::ones({2}));
    count = register_buffer("count", torch::zeros({1}, torch::kLong));
  }
  at::Tensor forward(const at::Tensor& x) {
    return head->forward(bn->forward(fc->forward(x))) * scale;
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
  torch::nn::Sequential head{nullptr};
  at::Tensor scale;
  at::Tensor count;
};
TORCH_MODULE(Net);

std::vector<std::string> keys_of(const c10::IValue& dict) {
  std::vector<std::string> keys;
  for (const auto& entry : dict.toGenericDict()) {
    keys.push_back(entry.key().toStringRef());
  }
  return keys;
}

// Whether `call` throws a c10::Error whose message holds `expected`.
::testing::AssertionResult throws_with(const std::function<void()>& call, const std::string& expected) {
  try {
    call();
  } catch (const c10::Error& e) {
    const std::string message = e.what_without_backtrace();
    if (message.find(expected) != std::string::npos) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "error \"" << message << "\" lacks \"" << expected << "\"";
  }
  return ::testing::AssertionFailure() << "no error, expected one with \"" << expected << "\"";
}

at::Tensor batch_x(int i) {
  return torch::linspace(-1.0 - i, 1.0 + i, 8 * 3).reshape({8, 3});
}
at::Tensor batch_y(int i) {
  return torch::cos(torch::linspace(0.0, 3.0 + i, 8 * 2)).reshape({8, 2});
}

void train(Net& net, optim::Optimizer& optimizer, int from, int to) {
  for (int i = from; i < to; ++i) {
    optimizer.zero_grad();
    torch::mse_loss(net->forward(batch_x(i)), batch_y(i)).backward();
    optimizer.step();
  }
}

// An optimizer configuration, with options away from the defaults, and
// one with libtorch's defaults to load into.
struct OptimizerCase {
  std::string name;
  std::function<std::unique_ptr<optim::Optimizer>(std::vector<at::Tensor>)> configured;
  std::function<std::unique_ptr<optim::Optimizer>(std::vector<at::Tensor>)> fresh;
};

void PrintTo(const OptimizerCase& config, std::ostream* out) {
  *out << config.name;
}

std::vector<OptimizerCase> optimizer_cases() {
  return {
      {"SGD",
       [](auto p) { return std::make_unique<optim::SGD>(p, optim::SGDOptions(0.1)); },
       [](auto p) { return std::make_unique<optim::SGD>(p, optim::SGDOptions(1.0)); }},
      {"SGDNesterov",
       [](auto p) {
         return std::make_unique<optim::SGD>(p, optim::SGDOptions(0.1).momentum(0.9).nesterov(true).weight_decay(0.1));
       },
       [](auto p) { return std::make_unique<optim::SGD>(p, optim::SGDOptions(1.0)); }},
      {"SGDDampening",
       [](auto p) { return std::make_unique<optim::SGD>(p, optim::SGDOptions(0.1).momentum(0.9).dampening(0.5)); },
       [](auto p) { return std::make_unique<optim::SGD>(p, optim::SGDOptions(1.0)); }},
      {"Adam",
       [](auto p) {
         return std::make_unique<optim::Adam>(p, optim::AdamOptions(0.01).betas({0.8, 0.9}));
       },
       [](auto p) { return std::make_unique<optim::Adam>(p); }},
      {"AdamAmsgrad",
       [](auto p) {
         return std::make_unique<optim::Adam>(p, optim::AdamOptions(0.01).amsgrad(true).weight_decay(0.1));
       },
       [](auto p) { return std::make_unique<optim::Adam>(p); }},
      {"AdamW",
       [](auto p) { return std::make_unique<optim::AdamW>(p, optim::AdamWOptions(0.01).amsgrad(true)); },
       [](auto p) { return std::make_unique<optim::AdamW>(p); }},
      {"RMSprop",
       [](auto p) { return std::make_unique<optim::RMSprop>(p, optim::RMSpropOptions(0.01)); },
       [](auto p) { return std::make_unique<optim::RMSprop>(p); }},
      {"RMSpropCentered",
       [](auto p) {
         return std::make_unique<optim::RMSprop>(
             p, optim::RMSpropOptions(0.01).momentum(0.5).centered(true).alpha(0.9));
       },
       [](auto p) { return std::make_unique<optim::RMSprop>(p); }},
      {"Adagrad",
       [](auto p) {
         return std::make_unique<optim::Adagrad>(
             p, optim::AdagradOptions(0.1).lr_decay(0.01).initial_accumulator_value(0.1).weight_decay(0.01));
       },
       [](auto p) { return std::make_unique<optim::Adagrad>(p); }},
  };
}

class StateDictTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("torch_ext_state_dict_test." + std::to_string(::getpid()));
    fs::create_directories(root_);
    torch::manual_seed(0);
  }
  void TearDown() override {
    fs::remove_all(root_);
  }

  // Through a file, as a resume reads it (dicts come back with Any keys).
  c10::IValue round_trip(const c10::IValue& value) {
    const std::string file = (root_ / "state.pt").string();
    torch_ext::write_checkpoint_file(file, value);
    return torch_ext::read_checkpoint_file(file);
  }

  fs::path root_;
};

TEST_F(StateDictTest, ModelStateDictHasPythonsNamesAndOrder) {
  Net net;
  const c10::IValue state_dict = torch_ext::get_model_state_dict(*net);
  const std::vector<std::string> expected = {
      "scale",
      "count",
      "fc.weight",
      "fc.bias",
      "bn.weight",
      "bn.bias",
      "bn.running_mean",
      "bn.running_var",
      "bn.num_batches_tracked",
      "head.0.weight",
      "head.0.bias",
      "head.2.weight"};
  EXPECT_EQ(keys_of(state_dict), expected);
  EXPECT_EQ(torch_ext::value_kind(state_dict), torch_ext::ValueKind::OrderedDict);
}

TEST_F(StateDictTest, ModelStateDictSharesMemoryAndIsDetached) {
  Net net;
  const auto state_dict = torch_ext::get_model_state_dict(*net).toGenericDict();
  const at::Tensor weight = state_dict.at("fc.weight").toTensor();
  EXPECT_FALSE(weight.requires_grad());
  EXPECT_EQ(weight.data_ptr(), net->fc->weight.data_ptr());
  EXPECT_EQ(state_dict.at("bn.num_batches_tracked").toTensor().scalar_type(), at::kLong);
}

TEST_F(StateDictTest, TiedWeightIsListedUnderBothNames) {
  torch::nn::Module model;
  auto linear = model.register_module("a", torch::nn::Linear(2, 2));
  auto tied = model.register_module("b", std::make_shared<torch::nn::Module>());
  tied->register_parameter("weight", linear->weight);
  const auto state_dict = torch_ext::get_model_state_dict(model).toGenericDict();
  EXPECT_EQ(keys_of(state_dict), (std::vector<std::string>{"a.weight", "a.bias", "b.weight"}));
  EXPECT_EQ(state_dict.at("a.weight").toTensor().data_ptr(), state_dict.at("b.weight").toTensor().data_ptr());

  // The optimizer knows the tied weight by its first name, as DCP does.
  optim::SGD sgd({linear->bias, tied->named_parameters()["weight"]}, optim::SGDOptions(0.1));
  const auto optim_dict = torch_ext::get_optimizer_state_dict(model, sgd).toGenericDict();
  const auto params = optim_dict.at("param_groups").toListRef()[0].toGenericDict().at("params");
  EXPECT_EQ(params, c10::IValue(c10::List<std::string>({"a.bias", "a.weight"})));
  torch_ext::set_model_state_dict(model, state_dict);
}

TEST_F(StateDictTest, SetModelStateDictCopiesInPlaceWithoutGrad) {
  Net source;
  Net target;
  {
    torch::NoGradGuard no_grad;
    source->fc->weight.add_(1.0);
    source->bn->running_mean.fill_(3.0);
  }
  const void* weight_memory = target->fc->weight.data_ptr();
  torch_ext::set_model_state_dict(*target, round_trip(torch_ext::get_model_state_dict(*source)));
  EXPECT_TRUE(torch::equal(target->fc->weight, source->fc->weight));
  EXPECT_TRUE(torch::equal(target->bn->running_mean, source->bn->running_mean));
  EXPECT_EQ(target->fc->weight.data_ptr(), weight_memory);
  EXPECT_TRUE(target->fc->weight.requires_grad());
  EXPECT_EQ(target->fc->weight.grad_fn(), nullptr);
}

TEST_F(StateDictTest, StrictLoadListsEveryProblemAndCopiesNothing) {
  Net net;
  auto state_dict = torch_ext::get_model_state_dict(*net).toGenericDict().copy();
  ASSERT_EQ(state_dict.erase("fc.bias"), 1u);
  ASSERT_EQ(state_dict.erase("bn.running_var"), 1u);
  state_dict.insert("fc.extra", torch::zeros({1}));
  state_dict.insert_or_assign("fc.weight", torch::zeros({3, 4}));
  state_dict.insert_or_assign("bn.weight", torch::zeros({4}, torch::kDouble));
  state_dict.insert_or_assign("scale", 2.0);
  state_dict.insert_or_assign("head.0.bias", torch::full({4}, 7.0));
  const at::Tensor bias_before = net->head[0]->as<torch::nn::Linear>()->bias.clone();

  const auto load = [&] { torch_ext::set_model_state_dict(*net, state_dict); };
  EXPECT_TRUE(throws_with(load, "missing keys: 'fc.bias', 'bn.running_var'"));
  EXPECT_TRUE(throws_with(load, "unexpected keys: 'fc.extra'"));
  EXPECT_TRUE(throws_with(load, "'fc.weight' has shape [3, 4], the module's is [4, 3]"));
  EXPECT_TRUE(throws_with(load, "'bn.weight' has dtype Double, the module's is Float"));
  EXPECT_TRUE(throws_with(load, "'scale' is a Double, expected a tensor"));
  EXPECT_TRUE(torch::equal(net->head[0]->as<torch::nn::Linear>()->bias, bias_before));
}

TEST_F(StateDictTest, NonStrictLoadSkipsMissingAndUnexpectedKeysOnly) {
  Net net;
  GenericDict partial(c10::StringType::get(), c10::AnyType::get());
  partial.insert("scale", torch::full({2}, 5.0));
  partial.insert("not.in.model", torch::zeros({1}));
  torch_ext::set_model_state_dict(*net, partial, /*strict=*/false);
  EXPECT_TRUE(torch::equal(net->scale, torch::full({2}, 5.0)));

  partial.insert_or_assign("scale", torch::zeros({3}));
  EXPECT_TRUE(throws_with(
      [&] { torch_ext::set_model_state_dict(*net, partial, /*strict=*/false); },
      "'scale' has shape [3], the module's is [2]"));
}

class OptimizerStateDictTest : public StateDictTest, public ::testing::WithParamInterface<OptimizerCase> {};

// Saved after 3 steps, through a file, loaded into a fresh model and an
// optimizer built with other hyperparameters: 2 more steps are bitwise those
// of the run that was not interrupted.
TEST_P(OptimizerStateDictTest, ResumeIsBitwiseEqualToAnUninterruptedRun) {
  const OptimizerCase& config = GetParam();
  Net net;
  auto optimizer = config.configured(net->parameters());
  train(net, *optimizer, 0, 3);
  GenericDict checkpoint(c10::StringType::get(), c10::AnyType::get());
  checkpoint.insert("model", torch_ext::get_model_state_dict(*net));
  checkpoint.insert("optim", torch_ext::get_optimizer_state_dict(*net, *optimizer));
  const auto loaded = round_trip(checkpoint).toGenericDict();

  Net resumed;
  auto resumed_optimizer = config.fresh(resumed->parameters());
  torch_ext::set_model_state_dict(*resumed, loaded.at("model"));
  torch_ext::set_optimizer_state_dict(*resumed, *resumed_optimizer, loaded.at("optim"));
  const auto before = torch_ext::get_optimizer_state_dict(*net, *optimizer).toGenericDict();
  const auto after_load = torch_ext::get_optimizer_state_dict(*resumed, *resumed_optimizer).toGenericDict();
  const auto groups = before.at("param_groups").toListRef();
  const auto loaded_groups = after_load.at("param_groups").toListRef();
  ASSERT_EQ(groups.size(), loaded_groups.size());
  EXPECT_EQ(keys_of(groups[0]), keys_of(loaded_groups[0]));
  for (const auto& entry : groups[0].toGenericDict()) {
    EXPECT_EQ(entry.value(), loaded_groups[0].toGenericDict().at(entry.key())) << entry.key().toStringRef();
  }
  EXPECT_EQ(keys_of(before.at("state")), keys_of(after_load.at("state")));

  train(net, *optimizer, 3, 5);
  train(resumed, *resumed_optimizer, 3, 5);
  const auto expected = torch_ext::get_model_state_dict(*net).toGenericDict();
  for (const auto& entry : torch_ext::get_model_state_dict(*resumed).toGenericDict()) {
    EXPECT_TRUE(torch::equal(entry.value().toTensor(), expected.at(entry.key()).toTensor()))
        << entry.key().toStringRef();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Optimizers, OptimizerStateDictTest, ::testing::ValuesIn(optimizer_cases()), [](const auto& info) {
      return info.param.name;
    });

TEST_F(StateDictTest, AdamLayoutHasPythonsKeysTypesAndStep) {
  Net net;
  optim::Adam adam(net->parameters(), optim::AdamOptions(0.01));
  EXPECT_TRUE(torch_ext::get_optimizer_state_dict(*net, adam).toGenericDict().at("state").toGenericDict().empty());
  train(net, adam, 0, 3);
  const auto state_dict = torch_ext::get_optimizer_state_dict(*net, adam).toGenericDict();
  EXPECT_EQ(keys_of(state_dict), (std::vector<std::string>{"state", "param_groups"}));

  const auto group = state_dict.at("param_groups").toListRef()[0].toGenericDict();
  EXPECT_EQ(
      keys_of(group),
      (std::vector<std::string>{
          "lr",
          "betas",
          "eps",
          "weight_decay",
          "amsgrad",
          "maximize",
          "foreach",
          "capturable",
          "differentiable",
          "fused",
          "decoupled_weight_decay",
          "params"}));
  EXPECT_TRUE(group.at("betas").isTuple());
  EXPECT_TRUE(group.at("weight_decay").isInt()); // Python's default: the int 0
  EXPECT_TRUE(group.at("lr").isDouble());
  EXPECT_TRUE(group.at("foreach").isNone());
  EXPECT_EQ(group.at("params").toListRef()[0].toStringRef(), "scale");

  const auto state = state_dict.at("state").toGenericDict();
  EXPECT_EQ(keys_of(state).size(), 8u); // every parameter, no buffer
  const auto scale = state.at("scale").toGenericDict();
  EXPECT_EQ(keys_of(scale), (std::vector<std::string>{"step", "exp_avg", "exp_avg_sq"}));
  const at::Tensor step = scale.at("step").toTensor();
  EXPECT_EQ(step.scalar_type(), at::kFloat);
  EXPECT_EQ(step.dim(), 0);
  EXPECT_EQ(step.item<float>(), 3.0f);
  const auto& libtorch_state =
      static_cast<const optim::AdamParamState&>(*adam.state().at(net->scale.unsafeGetTensorImpl()));
  EXPECT_EQ(scale.at("exp_avg").toTensor().data_ptr(), libtorch_state.exp_avg().data_ptr());
}

TEST_F(StateDictTest, SgdWithoutMomentumHasNoState) {
  Net net;
  optim::SGD sgd(net->parameters(), optim::SGDOptions(0.1));
  train(net, sgd, 0, 2);
  const auto state_dict = torch_ext::get_optimizer_state_dict(*net, sgd).toGenericDict();
  EXPECT_TRUE(state_dict.at("state").toGenericDict().empty());
  const auto group = state_dict.at("param_groups").toListRef()[0].toGenericDict();
  EXPECT_TRUE(group.at("momentum").isInt());
  EXPECT_EQ(group.at("lr").toDouble(), 0.1);
}

TEST_F(StateDictTest, GroupsAreMatchedByTheirParameterNames) {
  Net net;
  std::vector<optim::OptimizerParamGroup> groups;
  groups.emplace_back(net->fc->parameters(), std::make_unique<optim::AdamOptions>(0.5));
  groups.emplace_back(net->head->parameters(), std::make_unique<optim::AdamOptions>(0.25));
  optim::Adam adam(groups, optim::AdamOptions(0.01));
  const auto state_dict = torch_ext::get_optimizer_state_dict(*net, adam);

  // The same parameters, groups in the other order.
  std::vector<optim::OptimizerParamGroup> swapped;
  swapped.emplace_back(net->head->parameters(), std::make_unique<optim::AdamOptions>(1.0));
  swapped.emplace_back(net->fc->parameters(), std::make_unique<optim::AdamOptions>(1.0));
  optim::Adam loaded(swapped, optim::AdamOptions(1.0));
  torch_ext::set_optimizer_state_dict(*net, loaded, state_dict);
  EXPECT_EQ(static_cast<optim::AdamOptions&>(loaded.param_groups()[0].options()).lr(), 0.25);
  EXPECT_EQ(static_cast<optim::AdamOptions&>(loaded.param_groups()[1].options()).lr(), 0.5);

  // Grouped differently: an error naming both groupings.
  optim::Adam one_group(net->fc->parameters(), optim::AdamOptions(1.0));
  EXPECT_TRUE(throws_with(
      [&] { torch_ext::set_optimizer_state_dict(*net, one_group, state_dict); },
      "holds 2 param groups, but the optimizer has 1"));
}

TEST_F(StateDictTest, UnsupportedOptimizerIsNamed) {
  Net net;
  optim::LBFGS lbfgs(net->parameters());
  EXPECT_TRUE(
      throws_with([&] { torch_ext::get_optimizer_state_dict(*net, lbfgs); }, "torch::optim::LBFGS is not supported"));
  EXPECT_TRUE(throws_with(
      [&] {
        torch_ext::set_optimizer_state_dict(*net, lbfgs, GenericDict(c10::StringType::get(), c10::AnyType::get()));
      },
      "torch::optim::LBFGS is not supported"));
}

TEST_F(StateDictTest, ParameterOutsideTheModelIsAnError) {
  Net net;
  optim::SGD sgd({torch::zeros({2}, torch::requires_grad())}, optim::SGDOptions(0.1));
  EXPECT_TRUE(throws_with(
      [&] { torch_ext::get_optimizer_state_dict(*net, sgd); },
      "parameter 0 of the optimizer's param group 0 is not a parameter of the model"));
}

// Each edit of a valid Adam state dict, and the error it must raise. The
// optimizer must be left as it was.
TEST_F(StateDictTest, MalformedOptimizerStateDictsAreRejectedByName) {
  Net net;
  optim::Adam adam(net->parameters(), optim::AdamOptions(0.01));
  train(net, adam, 0, 1);
  const c10::IValue valid = round_trip(torch_ext::get_optimizer_state_dict(*net, adam));

  using Edit = std::function<void(GenericDict&, GenericDict&, GenericDict&)>; // (top, group, scale state)
  const std::vector<std::pair<Edit, std::string>> cases = {
      {[](auto&, auto& group, auto&) { EXPECT_EQ(group.erase("lr"), 1u); },
       "optim_state_dict has no entry 'param_groups.0.lr'"},
      {[](auto&, auto& group, auto&) { group.insert_or_assign("lr", "fast"); },
       "optim_state_dict entry 'param_groups.0.lr' is a str, expected a float or an int"},
      {[](auto&, auto& group, auto&) { group.insert_or_assign("betas", 0.9); },
       "'param_groups.0.betas' is a float, expected a tuple of two floats"},
      {[](auto&, auto& group, auto&) { group.insert_or_assign("maximize", true); },
       "'param_groups.0.maximize' is True, but libtorch's Adam supports only False"},
      {[](auto&, auto& group, auto&) { group.insert_or_assign("decoupled_weight_decay", true); },
       "load it into a torch::optim::AdamW"},
      {[](auto&, auto& group, auto&) { group.insert_or_assign("foreach", 1); },
       "'param_groups.0.foreach' is a Int, expected None or a bool"},
      {[](auto&, auto& group, auto&) { group.insert("momentum", 0.9); },
       "optim_state_dict has an entry 'param_groups.0.momentum' that libtorch's Adam does not have"},
      {[](auto&, auto& group, auto&) {
         group.insert_or_assign("params", c10::List<std::string>({"scale", "nope"}));
       },
       "names 'nope', which is not a parameter of the optimizer"},
      {[](auto&, auto& group, auto&) { group.insert_or_assign("params", c10::List<std::string>({"scale"})); },
       "the optimizer's param group 0 holds ['bn.bias', "},
      {[](auto& top, auto&, auto&) {
         top.at("state").toGenericDict().insert("nope.weight", top.at("state").toGenericDict().at("scale"));
       },
       "optim_state_dict entry 'state.nope.weight': 'nope.weight' is not a parameter of the optimizer"},
      {[](auto&, auto&, auto& scale) { scale.insert_or_assign("exp_avg", torch::zeros({3})); },
       "optim_state_dict entry 'state.scale.exp_avg' has shape [3], expected the parameter's shape [2]"},
      {[](auto&, auto&, auto& scale) { scale.insert_or_assign("exp_avg_sq", torch::zeros({2}, torch::kLong)); },
       "'state.scale.exp_avg_sq' has dtype Long, expected a floating point dtype"},
      {[](auto&, auto&, auto& scale) { scale.insert_or_assign("step", torch::tensor(1.5)); },
       "'state.scale.step' is 1.5, expected a whole number of steps"},
      {[](auto&, auto&, auto& scale) { EXPECT_EQ(scale.erase("exp_avg_sq"), 1u); },
       "optim_state_dict has no entry 'state.scale.exp_avg_sq'"},
      {[](auto&, auto&, auto& scale) { scale.insert("momentum_buffer", torch::zeros({2})); },
       "optim_state_dict has an entry 'state.scale.momentum_buffer' that libtorch's Adam state does not have"},
      {[](auto& top, auto&, auto&) { top.insert("extra", 1); },
       "optim_state_dict has an entry 'extra' that an optimizer state dict does not have"},
      {[](auto& top, auto&, auto&) { top.insert_or_assign("state", GenericList(c10::AnyType::get())); },
       "optim_state_dict entry 'state' is a GenericList, expected a dict"},
  };
  for (const auto& [edit, expected] : cases) {
    // A deep copy, so each case edits its own dicts.
    GenericDict top = valid.deepcopy().toGenericDict();
    GenericDict group = top.at("param_groups").toListRef()[0].toGenericDict();
    GenericDict scale = top.at("state").toGenericDict().at("scale").toGenericDict();
    edit(top, group, scale);
    EXPECT_TRUE(throws_with([&] { torch_ext::set_optimizer_state_dict(*net, adam, top); }, expected));
  }
  EXPECT_EQ(static_cast<optim::AdamOptions&>(adam.param_groups()[0].options()).lr(), 0.01);
  EXPECT_EQ(static_cast<const optim::AdamParamState&>(*adam.state().at(net->scale.unsafeGetTensorImpl())).step(), 1);

  // What Python's DCP writes that libtorch has no use for is accepted.
  GenericDict with_scheduler = valid.deepcopy().toGenericDict();
  with_scheduler.at("param_groups").toListRef()[0].toGenericDict().insert("initial_lr", 0.01);
  with_scheduler.at("param_groups").toListRef()[0].toGenericDict().insert_or_assign("fused", false);
  torch_ext::set_optimizer_state_dict(*net, adam, with_scheduler);
}

// The optimizer's errors name entries as every error does: the path below
// the optimizer state dict, which under its key in a checkpoint selects it.
TEST_F(StateDictTest, TheKeyPathAnOptimizerErrorNamesSelectsThatEntryOfACheckpoint) {
  Net net;
  optim::Adam adam(net->parameters(), optim::AdamOptions(0.01));
  train(net, adam, 0, 1);
  GenericDict optim_state = round_trip(torch_ext::get_optimizer_state_dict(*net, adam)).toGenericDict();
  GenericDict fc_weight = optim_state.at("state").toGenericDict().at("fc.weight").toGenericDict();
  fc_weight.insert_or_assign("exp_avg", torch::zeros({5}));
  const std::string prefix = "optim_state_dict entry '";
  std::string path;
  try {
    torch_ext::set_optimizer_state_dict(*net, adam, optim_state);
    FAIL() << "a wrong shape was loaded";
  } catch (const c10::Error& e) {
    const std::string message = e.what_without_backtrace();
    const size_t begin = message.find(prefix);
    ASSERT_NE(begin, std::string::npos) << message;
    path = message.substr(begin + prefix.size(), message.find('\'', begin + prefix.size()) - begin - prefix.size());
  }
  EXPECT_EQ(path, "state.fc.weight.exp_avg");
  GenericDict checkpoint(c10::StringType::get(), c10::AnyType::get());
  checkpoint.insert("optim", optim_state);
  const std::string file = (root_ / "checkpoint.pt").string();
  torch_ext::write_checkpoint_file(file, checkpoint);
  const auto selected = torch_ext::read_checkpoint_file(file, {true, {"optim." + path}}).toGenericDict();
  const auto state = selected.at("optim").toGenericDict().at("state").toGenericDict();
  ASSERT_EQ(state.size(), 1u);
  EXPECT_TRUE(state.at("fc.weight").toGenericDict().at("exp_avg").toTensor().equal(torch::zeros({5})));
}

TEST_F(StateDictTest, AdagradNeedsStateForEveryParameter) {
  Net net;
  optim::Adagrad adagrad(net->parameters());
  GenericDict state_dict = torch_ext::get_optimizer_state_dict(*net, adagrad).deepcopy().toGenericDict();
  ASSERT_EQ(state_dict.at("state").toGenericDict().erase("fc.bias"), 1u);
  EXPECT_TRUE(throws_with(
      [&] { torch_ext::set_optimizer_state_dict(*net, adagrad, state_dict); },
      "optim_state_dict has no entry 'state.fc.bias', but libtorch's Adagrad needs a state for every parameter"));
}

TEST_F(StateDictTest, RngStateRestoresTheSameDraws) {
  torch::manual_seed(7);
  const at::Tensor state = torch_ext::get_rng_state();
  EXPECT_EQ(state.scalar_type(), at::kByte);
  const at::Tensor first = torch::randn({10});
  torch_ext::set_rng_state(round_trip(state).toTensor());
  EXPECT_TRUE(torch::equal(torch::randn({10}), first));
  EXPECT_TRUE(
      throws_with([&] { torch_ext::set_rng_state(torch::zeros({3})); }, "set_rng_state expected a uint8 CPU tensor"));
}

} // namespace
