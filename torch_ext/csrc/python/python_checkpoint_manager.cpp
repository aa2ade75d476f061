#include "python_checkpoint_manager.h"

#include <pybind11/stl.h>
#include <torch/csrc/jit/python/pybind_utils.h>
#include <torch/csrc/utils/pybind.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <c10/util/StringUtil.h>

#include <torch_ext/checkpoint_manager.h>

#include "torch_ext/csrc/manager/step_commit.h"

#include "python_read_options.h"
#include "python_state.h"

namespace torch_ext::python {
namespace {

namespace py = pybind11;

// The manager's destructor waits for its threads, whose future callbacks
// may need the GIL: it runs without it.
struct DeleteWithoutGil {
  void operator()(CheckpointManager* manager) const {
    if (PyGILState_Check()) {
      py::gil_scoped_release no_gil;
      delete manager;
    } else {
      delete manager;
    }
  }
};
using Holder = std::unique_ptr<CheckpointManager, DeleteWithoutGil>;

c10::intrusive_ptr<c10d::Store> store_of(const py::handle& store) {
  if (store.is_none()) {
    return {};
  }
  try {
    return store.cast<c10::intrusive_ptr<c10d::Store>>();
  } catch (const py::cast_error&) {
    throw py::type_error(
        "CheckpointManager expected store to be a torch.distributed.Store (for example "
        "torch.distributed.distributed_c10d._get_default_store()), got " +
        py::str(py::type::handle_of(store).attr("__name__")).cast<std::string>());
  }
}

template <class T>
T option_type(T SaveOptions::*);

// Sets the save options that Python passes as keywords, which
// visit_save_options names; any other keyword is an error.
void set_save_options(SaveOptions& options, const py::kwargs& kwargs) {
  std::vector<std::string> names;
  visit_save_options([&](const char* name, auto field) {
    using T = decltype(option_type(field));
    names.emplace_back(name);
    if (!kwargs.contains(name)) {
      return;
    }
    const py::handle value = kwargs[name];
    try {
      options.*field = value.cast<T>();
    } catch (const py::cast_error&) {
      throw py::type_error(
          std::string("CheckpointManager expected ") + name + " to be of type " + c10::getTypePtr<T>()->repr_str() +
          ", got " + py::str(py::type::handle_of(value).attr("__name__")).cast<std::string>());
    }
  });
  for (const auto& item : kwargs) {
    const std::string name = py::str(item.first);
    if (std::find(names.begin(), names.end(), name) == names.end()) {
      throw py::type_error(
          "CheckpointManager got an unexpected keyword argument '" + name + "' (its save options: " +
          c10::Join(", ", names) + ")");
    }
  }
}

Holder make_manager(
    const std::string& root,
    std::optional<int64_t> max_to_keep,
    std::optional<int64_t> keep_every_n_steps,
    int64_t rank,
    int64_t world_size,
    const py::object& store,
    double barrier_timeout_secs,
    const py::kwargs& save_options) {
  CheckpointManagerOptions options;
  options.max_to_keep = max_to_keep;
  options.keep_every_n_steps = keep_every_n_steps;
  options.rank = rank;
  options.world_size = world_size;
  options.store = store_of(store);
  const std::chrono::duration<double> barrier_timeout(barrier_timeout_secs);
  check_barrier_timeout(barrier_timeout, "CheckpointManager");
  options.barrier_timeout = std::chrono::ceil<std::chrono::milliseconds>(barrier_timeout);
  set_save_options(options, save_options);
  // Ranks other than 0 wait here for rank 0's clean-up.
  py::gil_scoped_release no_gil;
  return Holder(new CheckpointManager(root, std::move(options)));
}

py::tuple to_python(std::pair<FuturePtr, FuturePtr> futures) {
  return py::make_tuple(
      torch::jit::toPyObject(c10::IValue(std::move(futures.first))),
      torch::jit::toPyObject(c10::IValue(std::move(futures.second))));
}

py::tuple save(CheckpointManager& manager, int64_t step, const py::handle& state_dict) {
  // Converted on the calling thread. A value that cannot be converted still
  // takes part in the save, as this rank's failure, so that the other ranks
  // learn it instead of waiting; then it is raised here.
  c10::IValue state;
  try {
    state = to_state(state_dict);
  } catch (py::error_already_set& e) {
    const auto error = std::make_exception_ptr(std::runtime_error(e.what()));
    {
      py::gil_scoped_release no_gil;
      manager.save_failure(step, error);
    }
    throw;
  } catch (...) {
    const std::exception_ptr error = std::current_exception();
    {
      py::gil_scoped_release no_gil;
      manager.save_failure(step, error);
    }
    throw;
  }
  std::pair<FuturePtr, FuturePtr> futures;
  {
    // save() waits for the previous save, whose Python callbacks need the GIL.
    py::gil_scoped_release no_gil;
    futures = manager.save(step, state);
  }
  return to_python(std::move(futures));
}

py::object load(const CheckpointManager& manager, std::optional<int64_t> step, bool verify, py::handle keys) {
  const ReadOptions options = read_options(verify, keys);
  c10::IValue state;
  {
    py::gil_scoped_release no_gil;
    state = step ? manager.load(*step, options) : manager.load(options);
  }
  return from_state(state);
}

} // namespace

void bind_checkpoint_manager(py::module& module) {
  const CheckpointManagerOptions defaults;
  py::class_<CheckpointManager, Holder>(module, "_CheckpointManager")
      .def(
          py::init(&make_manager),
          py::arg("root"),
          py::kw_only(),
          py::arg("max_to_keep") = defaults.max_to_keep,
          py::arg("keep_every_n_steps") = defaults.keep_every_n_steps,
          py::arg("rank") = defaults.rank,
          py::arg("world_size") = defaults.world_size,
          py::arg("store") = py::none(),
          py::arg("barrier_timeout_secs") = std::chrono::duration<double>(defaults.barrier_timeout).count())
      .def("save", &save, py::arg("step"), py::arg("state_dict"))
      .def("all_steps", &CheckpointManager::all_steps, py::call_guard<py::gil_scoped_release>())
      .def("latest_step", &CheckpointManager::latest_step, py::call_guard<py::gil_scoped_release>())
      .def(
          "load",
          &load,
          py::arg("step") = py::none(),
          py::kw_only(),
          py::arg("verify") = ReadOptions{}.verify,
          py::arg("keys") = py::none())
      .def("step_path", &CheckpointManager::step_path, py::arg("step"))
      .def_property_readonly("root", &CheckpointManager::root)
      .def(
          "wait_until_finished",
          &CheckpointManager::wait_until_finished,
          py::call_guard<py::gil_scoped_release>())
      .def("close", &CheckpointManager::close, py::call_guard<py::gil_scoped_release>());

  // A root as it is on disk, without a manager (whose construction cleans up).
  py::class_<detail::StepFolder>(module, "StepFolder")
      .def_readonly("step", &detail::StepFolder::step)
      .def_readonly("path", &detail::StepFolder::path)
      .def_readonly("committed", &detail::StepFolder::committed)
      .def_readonly("commit_file", &detail::StepFolder::commit_file)
      .def_readonly("world_size", &detail::StepFolder::world_size)
      .def_readonly("rank_files", &detail::StepFolder::rank_files);
  module.def("step_folders", &detail::step_folders, py::arg("root"), py::call_guard<py::gil_scoped_release>());
}

} // namespace torch_ext::python
