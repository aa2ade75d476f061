#include "python_state.h"

#include <Python.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/jit/python/pybind_utils.h>

#include <string>
#include <vector>

#include "torch_ext/csrc/state/state_value.h"

namespace torch_ext::python {
namespace {

namespace py = pybind11;
using detail::KeyPath;

// The Python classes a checkpoint tells apart, looked up once (and kept for
// the life of the process).
struct Classes {
  PyObject* tensor;
  PyObject* parameter;
  PyObject* size;
  PyObject* ordered_dict;

  static const Classes& get() {
    const auto find = [](const char* module, const char* name) {
      return py::object(py::module_::import(module).attr(name)).release().ptr();
    };
    static const Classes classes{
        find("torch", "Tensor"),
        find("torch.nn", "Parameter"),
        find("torch", "Size"),
        find("collections", "OrderedDict"),
    };
    return classes;
  }
};

// Sends visit_state's events for a Python object to an IValueBuilder, with
// the rules of value_kind: only the exact types torch.load(weights_only=True)
// gives back, so that what is saved comes back with its type.
class PythonWalker {
 public:
  c10::IValue run(py::handle value) {
    walk(value);
    return builder_.take();
  }

 private:
  void walk(py::handle value) {
    PyObject* object = value.ptr();
    PyObject* type = reinterpret_cast<PyObject*>(Py_TYPE(object));
    const Classes& classes = Classes::get();
    if (object == Py_None) {
      builder_.leaf(c10::IValue(), ValueKind::None);
    } else if (auto scalar = to_scalar(value)) {
      builder_.leaf(*scalar, *value_kind(*scalar));
    } else if (type == classes.tensor || type == classes.parameter) {
      const at::Tensor& tensor = THPVariable_Unpack(object);
      detail::kind_at(c10::IValue(tensor), path_);
      builder_.tensor(tensor);
    } else if (type == classes.size || PyTuple_CheckExact(object)) {
      sequence(value, type == classes.size ? ValueKind::Size : ValueKind::Tuple);
    } else if (PyList_CheckExact(object)) {
      sequence(value, ValueKind::List);
    } else if (type == classes.ordered_dict || PyDict_CheckExact(object)) {
      dict(value, type == classes.ordered_dict);
    } else if (auto shards = to_local_shards(value)) {
      builder_.leaf(*shards, ValueKind::LocalShards);
    } else {
      detail::throw_unsupported(path_, "a " + type_name(value));
    }
  }

  // A torch.classes.torch_ext.LocalShards, or nullopt for any other value.
  static std::optional<c10::IValue> to_local_shards(py::handle value) {
    if (!py::isinstance(value, py::module_::import("torch._C").attr("ScriptObject"))) {
      return std::nullopt;
    }
    c10::IValue converted;
    try {
      converted = torch::jit::toIValue(value, c10::getCustomClassType<c10::intrusive_ptr<LocalShards>>());
    } catch (const std::exception&) {
      return std::nullopt; // another class
    }
    return as_local_shards(converted) ? std::optional<c10::IValue>(converted) : std::nullopt;
  }

  // None for a value that is no str, int, float or bool of exactly those types.
  std::optional<c10::IValue> to_scalar(py::handle value) {
    PyObject* object = value.ptr();
    if (PyBool_Check(object)) {
      return c10::IValue(object == Py_True);
    }
    if (PyLong_CheckExact(object)) {
      int overflow = 0;
      const long long number = PyLong_AsLongLongAndOverflow(object, &overflow);
      if (overflow != 0) {
        detail::throw_unsupported(path_, "an int that does not fit in 64 bits");
      }
      return c10::IValue(static_cast<int64_t>(number));
    }
    if (PyFloat_CheckExact(object)) {
      return c10::IValue(PyFloat_AS_DOUBLE(object));
    }
    if (PyUnicode_CheckExact(object)) {
      return c10::IValue(value.cast<std::string>());
    }
    return std::nullopt;
  }

  void sequence(py::handle value, ValueKind kind) {
    detail::check_depth(path_);
    builder_.begin(kind);
    size_t index = 0;
    for (py::handle item : value) {
      path_.push_index(index++);
      if (kind == ValueKind::Size) {
        builder_.leaf(*to_scalar(item), ValueKind::Int); // torch.Size holds ints
      } else {
        walk(item);
      }
      path_.pop();
    }
    builder_.end(kind);
  }

  void dict(py::handle value, bool ordered) {
    detail::check_depth(path_);
    const ValueKind kind = ordered ? ValueKind::OrderedDict : ValueKind::Dict;
    builder_.begin(kind);
    // An OrderedDict's own order (move_to_end() changes it) is the one its
    // iteration gives, which dict() copies; PyDict_Next on it may differ.
    py::dict items = ordered ? py::dict(py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(&PyDict_Type))(value))
                             : py::reinterpret_borrow<py::dict>(value);
    for (const auto& [key, item] : items) {
      std::optional<c10::IValue> converted = to_scalar(key);
      if (!converted) {
        detail::throw_invalid_key(path_, type_name(key));
      }
      path_.push_key(*converted);
      builder_.key(*converted);
      walk(item);
      path_.pop();
    }
    if (ordered) {
      py::dict attributes = value.attr("__dict__");
      if (!attributes.empty()) {
        builder_.attributes(c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get()));
        path_.push_key(std::string("__dict__"));
        dict(attributes, false);
        path_.pop();
      }
    }
    builder_.end(kind);
  }

  detail::IValueBuilder builder_;
  KeyPath path_;
};

// Builds Python objects from visit_state's events.
class PythonBuilder {
 public:
  void leaf(const c10::IValue& value, ValueKind kind) {
    add(scalar(value, kind));
  }

  void tensor(const at::Tensor& tensor) {
    add(py::reinterpret_steal<py::object>(THPVariable_Wrap(tensor)));
  }

  void begin(const c10::IValue& /*container*/, ValueKind kind) {
    Frame frame{kind};
    if (kind == ValueKind::List) {
      frame.container = py::list();
    } else if (kind == ValueKind::Dict) {
      frame.container = py::dict();
    } else if (kind == ValueKind::OrderedDict) {
      frame.container = py::reinterpret_borrow<py::object>(Classes::get().ordered_dict)();
    }
    frames_.push_back(std::move(frame));
  }

  void key(const c10::IValue& key) {
    frames_.back().key = scalar(key, *value_kind(key));
  }

  void attributes(const c10::impl::GenericDict& /*attributes*/) {
    frames_.back().reading_attributes = true;
  }

  void end(const c10::IValue& /*container*/, ValueKind kind) {
    Frame frame = std::move(frames_.back());
    frames_.pop_back();
    if (kind == ValueKind::Tuple || kind == ValueKind::Size) {
      py::tuple tuple(frame.items.size());
      for (size_t i = 0; i < frame.items.size(); ++i) {
        tuple[i] = std::move(frame.items[i]);
      }
      add(kind == ValueKind::Size ? py::reinterpret_borrow<py::object>(Classes::get().size)(tuple) : tuple);
      return;
    }
    if (frame.attributes) {
      for (const auto& [name, attribute] : py::reinterpret_borrow<py::dict>(frame.attributes)) {
        py::setattr(frame.container, name, attribute);
      }
    }
    add(std::move(frame.container));
  }

  py::object take() {
    return std::move(result_);
  }

  KeyPath path;

 private:
  struct Frame {
    ValueKind kind;
    py::object container; // list, dict, OrderedDict
    std::vector<py::object> items; // tuple, torch.Size
    py::object key;
    bool reading_attributes = false;
    py::object attributes;
  };

  static py::object scalar(const c10::IValue& value, ValueKind kind) {
    switch (kind) {
      case ValueKind::None:
        return py::none();
      case ValueKind::Bool:
        return py::bool_(value.toBool());
      case ValueKind::Int:
        return py::int_(value.toInt());
      case ValueKind::Float:
        return py::float_(value.toDouble());
      default:
        return py::str(value.toStringRef());
    }
  }

  void add(py::object value) {
    if (frames_.empty()) {
      result_ = std::move(value);
      return;
    }
    Frame& frame = frames_.back();
    if (frame.reading_attributes) {
      frame.attributes = std::move(value);
      frame.reading_attributes = false;
    } else if (frame.kind == ValueKind::List) {
      py::reinterpret_borrow<py::list>(frame.container).append(std::move(value));
    } else if (frame.kind == ValueKind::Dict || frame.kind == ValueKind::OrderedDict) {
      if (PyObject_SetItem(frame.container.ptr(), frame.key.ptr(), value.ptr()) != 0) {
        throw py::error_already_set();
      }
    } else {
      frame.items.push_back(std::move(value));
    }
  }

  std::vector<Frame> frames_;
  py::object result_;
};

} // namespace

c10::IValue to_state(py::handle value) {
  return PythonWalker().run(value);
}

py::object from_state(const c10::IValue& value) {
  PythonBuilder builder;
  detail::visit_state(value, builder, builder.path);
  return builder.take();
}

std::string type_name(py::handle value) {
  return Py_TYPE(value.ptr())->tp_name;
}

} // namespace torch_ext::python
