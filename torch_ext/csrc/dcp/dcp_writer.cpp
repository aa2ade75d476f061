// DcpWriter: a DCP checkpoint written leaf by leaf into one data file.
#include <torch_ext/dcp.h>

#include <optional>
#include <unordered_set>
#include <utility>

#include <c10/util/Exception.h>

#include "flatten.h"
#include "metadata_entries.h"

namespace torch_ext::dcp {

class DcpWriter::Impl {
 public:
  Impl(std::string path, bool compress) : path_(std::move(path)) {
    prepare_folder(path_);
    data_.emplace(path_, data_file_name(0, 0), compress);
    metadata_.planner_data.emplace();
  }

  void write(const ObjectPath& object_path, const c10::IValue& value) {
    TORCH_CHECK(data_.has_value(), "the DCP checkpoint '", path_, "' is committed or failed: nothing more can be written to it");
    const std::string fqn = detail::dcp::key_path(object_path);
    TORCH_CHECK_VALUE(fqns_.insert(fqn).second, "the DCP checkpoint '", path_, "' has an entry '", fqn, "' already");
    TORCH_CHECK_TYPE(
        !value.isTensor() || value.toTensor().device().is_cpu(),
        "the DCP checkpoint '",
        path_,
        "' takes CPU tensors; '",
        fqn,
        "' is on ",
        value.toTensor().device());
    const ItemIndex index = detail::dcp::item_index(fqn, value);
    WriteResult result;
    try {
      result = value.isTensor() ? data_->write_tensor(index, value.toTensor()) : data_->write_object(index, value);
    } catch (...) {
      // The data file may hold part of the item: it is dropped, and the checkpoint with it.
      data_.reset();
      throw;
    }
    detail::dcp::add_entry(metadata_, fqn, object_path, value);
    metadata_.storage_data.emplace_back(std::move(result.index), std::move(result.location));
  }

  void commit() {
    TORCH_CHECK(data_.has_value(), "the DCP checkpoint '", path_, "' is committed or failed: it cannot be committed");
    data_->commit();
    data_.reset();
    detail::dcp::finish_metadata(metadata_, path_);
    commit_metadata(path_, metadata_);
  }

 private:
  std::string path_;
  std::optional<DataFileWriter> data_;
  Metadata metadata_;
  std::unordered_set<std::string> fqns_;
};

DcpWriter::DcpWriter(const std::string& path, bool compress) : impl_(std::make_unique<Impl>(path, compress)) {}

DcpWriter::~DcpWriter() = default;

void DcpWriter::write(const ObjectPath& path, const c10::IValue& value) {
  impl_->write(path, value);
}

void DcpWriter::commit() {
  impl_->commit();
}

} // namespace torch_ext::dcp
