#include "python_read_options.h"

#include <string>

namespace torch_ext::python {

namespace py = pybind11;

ReadOptions read_options(bool verify, py::handle keys) {
  ReadOptions options;
  options.verify = verify;
  if (keys.is_none()) {
    return options;
  }
  // A str is iterable too, as one-letter keys.
  if (py::isinstance<py::str>(keys) || !py::isinstance<py::iterable>(keys)) {
    throw py::type_error(
        "keys must be a sequence of key paths (such as ['model.fc.weight']), got a " +
        py::str(py::type::handle_of(keys).attr("__name__")).cast<std::string>());
  }
  for (py::handle key : keys) {
    if (!py::isinstance<py::str>(key)) {
      throw py::type_error(
          "keys must be key paths (str), got a " + py::str(py::type::handle_of(key).attr("__name__")).cast<std::string>());
    }
    options.keys.push_back(key.cast<std::string>());
  }
  return options;
}

} // namespace torch_ext::python
