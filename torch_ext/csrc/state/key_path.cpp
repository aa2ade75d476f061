#include "key_path.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace torch_ext::detail {
namespace {

constexpr char kSeparator = '.';

// Python's repr of a float: the shortest text that reads back the same.
std::string float_text(double value) {
  if (std::isnan(value)) {
    return "nan";
  }
  if (std::isinf(value)) {
    return value > 0 ? "inf" : "-inf";
  }
  char text[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(text, sizeof(text), "%.*g", precision, value);
    if (std::strtod(text, nullptr) == value) {
      break;
    }
  }
  std::string result(text);
  if (result.find_first_of(".en") == std::string::npos) {
    result += ".0";
  }
  return result;
}

} // namespace

std::string key_text(const c10::IValue& key) {
  if (key.isString()) {
    return key.toStringRef();
  }
  if (key.isBool()) {
    return key.toBool() ? "True" : "False";
  }
  if (key.isInt()) {
    return std::to_string(key.toInt());
  }
  if (key.isDouble()) {
    return float_text(key.toDouble());
  }
  return std::string("<") + key.tagKind() + ">";
}

std::string index_text(size_t index) {
  return std::to_string(index);
}

KeyPath::KeyPath(std::string root) : root_(std::move(root)) {}

void KeyPath::push_key(const c10::IValue& key) {
  push_key(key_text(key));
}

// By depth, not by text: a first key may be '' (then `.x` is the path below it).
void KeyPath::push_key(const std::string& key) {
  ends_.push_back(text_.size());
  if (ends_.size() > 1) {
    text_ += kSeparator;
  }
  text_ += key;
}

void KeyPath::push_index(size_t index) {
  push_key(index_text(index));
}

void KeyPath::pop() {
  text_.resize(ends_.back());
  ends_.pop_back();
}

std::string KeyPath::describe() const {
  return ends_.empty() ? "the " + root_ : root_ + " entry '" + text_ + "'";
}

PathStep read_step(std::string_view path, std::string_view step) {
  if (path == step) {
    return {PathStep::kEntry, {}};
  }
  if (path.size() > step.size() && path.compare(0, step.size(), step) == 0 && path[step.size()] == kSeparator) {
    return {PathStep::kBelow, path.substr(step.size() + 1)};
  }
  return {PathStep::kMiss, {}};
}

} // namespace torch_ext::detail
