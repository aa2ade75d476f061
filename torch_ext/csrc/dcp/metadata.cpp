#include <torch_ext/dcp.h>

namespace torch_ext::dcp {

std::string flat_key(const ObjectPath& path) {
  std::string key;
  for (const PathItem& step : path) {
    if (!key.empty()) {
      key += '.';
    }
    if (const auto* text = std::get_if<std::string>(&step)) {
      key += *text;
    } else {
      key += std::to_string(std::get<int64_t>(step));
    }
  }
  return key;
}

} // namespace torch_ext::dcp
