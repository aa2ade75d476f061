// load_sharded: a resharding load, its plan (load_plan.h) read in place.
#include <torch_ext/dcp_sharded.h>

#include <utility>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/state/key_path.h"

#include "flatten.h"
#include "load_plan.h"

namespace torch_ext::dcp {
namespace {

using detail::dcp::FlatEntry;

// The key of `dict` that prints as the path step `step`.
c10::IValue key_at(const c10::IValue& dict, const PathItem& step) {
  const std::string& name = std::get<std::string>(step);
  for (const auto& entry : dict.toGenericDict()) {
    if (detail::key_text(entry.key()) == name) {
      return entry.key();
    }
  }
  TORCH_INTERNAL_ASSERT(false, "no key '", name, "' where flatten_state_dict found one");
}

c10::IValue child_at(const c10::IValue& container, const PathItem& step) {
  if (container.isGenericDict()) {
    return container.toGenericDict().at(key_at(container, step));
  }
  return container.toList().get(static_cast<size_t>(std::get<int64_t>(step)));
}

// Puts `value` where `path` (flatten_state_dict's, of `root`) leads in
// `root`, whose dicts and lists the caller shares: a dict step names the key
// that prints as it.
void replace_at(const c10::IValue& root, const ObjectPath& path, c10::IValue value) {
  c10::IValue container = root;
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    container = child_at(container, path[i]);
  }
  if (container.isGenericDict()) {
    container.toGenericDict().insert_or_assign(key_at(container, path.back()), std::move(value));
  } else {
    container.toList().set(static_cast<size_t>(std::get<int64_t>(path.back())), std::move(value));
  }
}

} // namespace

void load_sharded(const CheckpointReader& reader, const c10::IValue& into) {
  const detail::dcp::LoadPlan plan = detail::dcp::plan_load(reader.metadata(), into, reader.folder());
  reader.read_regions_into(plan.reads);
  for (const FlatEntry& entry : plan.objects) {
    replace_at(into, entry.path, reader.read_object(ItemIndex{entry.fqn, std::nullopt, std::nullopt}));
  }
}

void load_sharded(const std::string& path, const c10::IValue& into, bool verify) {
  load_sharded(CheckpointReader(path, verify), into);
}

} // namespace torch_ext::dcp
