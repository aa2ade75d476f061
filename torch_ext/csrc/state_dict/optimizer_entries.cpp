#include "optimizer_entries.h"

#include <cmath>
#include <utility>

#include <ATen/ops/scalar_tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>

namespace torch_ext::detail {
namespace {

std::string type_name(const c10::IValue& value) {
  if (value.isDouble()) {
    return "float";
  }
  if (value.isString()) {
    return "str";
  }
  if (value.isGenericDict()) {
    return "dict";
  }
  return value.tagKind();
}

} // namespace

Dict new_dict() {
  return Dict(c10::StringType::get(), c10::AnyType::get());
}

c10::IValue zero_as_int(double value) {
  return value == 0 ? c10::IValue(int64_t{0}) : c10::IValue(value);
}

at::Tensor step_tensor(int64_t step) {
  return at::scalar_tensor(static_cast<double>(step), at::kFloat);
}

Entries::Entries(const c10::IValue& value, KeyPath path)
    : dict_(value.isGenericDict() ? value.toGenericDict() : new_dict()), path_(std::move(path)) {
  TORCH_CHECK_TYPE(value.isGenericDict(), path_.describe(), " is a ", type_name(value), ", expected a dict");
  for (const auto& entry : dict_) {
    TORCH_CHECK_TYPE(
        entry.key().isString(),
        path_.describe(),
        " has a key of type ",
        type_name(entry.key()),
        ", expected str keys");
  }
}

KeyPath Entries::path(const std::string& key) const {
  KeyPath path = path_;
  path.push_key(key);
  return path;
}

std::vector<std::string> Entries::keys() const {
  std::vector<std::string> keys;
  for (const auto& entry : dict_) {
    keys.push_back(entry.key().toStringRef());
  }
  return keys;
}

const c10::IValue& Entries::at(const std::string& key) {
  const auto found = dict_.find(key);
  TORCH_CHECK(found != dict_.end(), path_.root(), " has no entry '", path(key).str(), "'");
  read_.insert(key);
  return found->value();
}

double Entries::number(const std::string& key) {
  const c10::IValue& value = at(key);
  TORCH_CHECK_TYPE(
      value.isDouble() || value.isInt(), path(key).describe(), " is a ", type_name(value), ", expected a float or an int");
  return value.isDouble() ? value.toDouble() : static_cast<double>(value.toInt());
}

bool Entries::flag(const std::string& key) {
  const c10::IValue& value = at(key);
  TORCH_CHECK_TYPE(value.isBool(), path(key).describe(), " is a ", type_name(value), ", expected a bool");
  return value.toBool();
}

std::tuple<double, double> Entries::pair(const std::string& key) {
  const c10::IValue& value = at(key);
  std::vector<c10::IValue> items;
  if (value.isTuple()) {
    items = value.toTupleRef().elements().vec();
  } else if (value.isList()) {
    items = value.toListRef().vec();
  }
  const bool numbers =
      items.size() == 2 && (items[0].isDouble() || items[0].isInt()) && (items[1].isDouble() || items[1].isInt());
  if (!numbers) {
    const std::string got = value.isTuple() || value.isList() ? c10::str(value) : "a " + type_name(value);
    TORCH_CHECK_TYPE(false, path(key).describe(), " is ", got, ", expected a tuple of two floats");
  }
  return {items[0].toScalar().toDouble(), items[1].toScalar().toDouble()};
}

int64_t Entries::step(const std::string& key) {
  const c10::IValue& value = at(key);
  double step = -1;
  if (value.isTensor() && value.toTensor().numel() == 1 && !value.toTensor().is_complex()) {
    step = value.toTensor().item<double>();
  } else if (value.isDouble() || value.isInt()) {
    step = value.toScalar().toDouble();
  } else {
    TORCH_CHECK_TYPE(false, path(key).describe(), " is a ", type_name(value), ", expected a 0-dim tensor (or a number)");
  }
  TORCH_CHECK(
      step >= 0 && step == std::floor(step) && step < 9.0e18,
      path(key).describe(),
      " is ",
      step,
      ", expected a whole number of steps");
  return static_cast<int64_t>(step);
}

bool Entries::has_tensor(const std::string& key) const {
  const auto found = dict_.find(key);
  return found != dict_.end() && !found->value().isNone();
}

at::Tensor Entries::tensor(const std::string& key, const at::Tensor& param) {
  const c10::IValue& value = at(key);
  TORCH_CHECK_TYPE(value.isTensor(), path(key).describe(), " is a ", type_name(value), ", expected a tensor");
  const at::Tensor& tensor = value.toTensor();
  TORCH_CHECK(
      tensor.sizes() == param.sizes(),
      path(key).describe(),
      " has shape ",
      tensor.sizes(),
      ", expected the parameter's shape ",
      param.sizes());
  TORCH_CHECK_TYPE(
      tensor.is_floating_point(), path(key).describe(), " has dtype ", tensor.scalar_type(), ", expected a floating point dtype");
  return tensor.to(param.device(), param.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
}

void Entries::python_only(const std::string& key, bool supported, const char* optimizer, const char* hint) {
  if (!dict_.contains(key)) {
    return;
  }
  const c10::IValue& value = at(key);
  TORCH_CHECK(
      value.isBool() && value.toBool() == supported,
      path(key).describe(),
      " is ",
      value,
      ", but libtorch's ",
      optimizer,
      " supports only ",
      supported ? "True" : "False",
      hint);
}

void Entries::kernel_choice(const std::string& key) {
  if (!dict_.contains(key)) {
    return;
  }
  const c10::IValue& value = at(key);
  TORCH_CHECK_TYPE(
      value.isNone() || value.isBool(), path(key).describe(), " is a ", type_name(value), ", expected None or a bool");
}

void Entries::ignore(const std::string& key) {
  read_.insert(key);
}

void Entries::check_all_read(const std::string& reader) const {
  for (const auto& entry : dict_) {
    const std::string& key = entry.key().toStringRef();
    TORCH_CHECK(
        read_.count(key) != 0, path_.root(), " has an entry '", path(key).str(), "' that ", reader, " does not have");
  }
}

} // namespace torch_ext::detail
