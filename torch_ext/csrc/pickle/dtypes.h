#pragma once

#include <c10/core/ScalarType.h>

#include <optional>
#include <string_view>

namespace torch_ext::detail {

// How torch.save names a dtype: `torch.<python_name>`, and the legacy storage
// class `torch.<storage_class>` it pickles tensors of that dtype with
// (_rebuild_tensor_v2); dtypes without one are pickled with
// torch.storage.UntypedStorage and _rebuild_tensor_v3.
struct DtypeNames {
  c10::ScalarType dtype;
  std::string_view python_name;
  std::string_view storage_class; // empty: none
};

// nullptr for a dtype no checkpoint holds (is_checkpoint_dtype).
const DtypeNames* dtype_names(c10::ScalarType dtype);
std::optional<c10::ScalarType> dtype_from_python_name(std::string_view name);
std::optional<c10::ScalarType> dtype_from_storage_class(std::string_view name);

} // namespace torch_ext::detail
