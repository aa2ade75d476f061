#include "checkpoint_file_reader.h"

#include <string_view>

#include <c10/util/Exception.h>

#include "torch_ext/csrc/io/mapped_file.h"
#include "torch_ext/csrc/pickle/torch_globals.h"
#include "torch_ext/csrc/state/select_keys.h"
#include "torch_ext/csrc/state/state_value.h"

#include "archive_reader.h"
#include "storage_binder.h"

namespace torch_ext::detail {
namespace {

const ArchiveReader::Record& required_record(const ArchiveReader& archive, const std::string& name) {
  const ArchiveReader::Record* record = archive.find(name);
  if (record == nullptr) {
    archive.fail("it has no record '" + name + "', which torch.save writes");
  }
  return *record;
}

std::string_view record_text(const ArchiveReader& archive, const ArchiveReader::Record& record) {
  return {reinterpret_cast<const char*>(archive.data() + archive.data_offset(record)), record.size};
}

} // namespace

c10::IValue read_torch_save_file(const std::string& file, const ReadOptions& options) {
  return read_torch_save_archive(ArchiveReader(MappedFile::open(file)), options, file);
}

c10::IValue read_torch_save_archive(const ArchiveReader& archive, const ReadOptions& options, const std::string& where) {
  StorageBinder binder(archive, options.verify);
  const ArchiveReader::Record& pickle = required_record(archive, "data.pkl");
  if (options.verify) {
    binder.verify(pickle);
  }
  if (const ArchiveReader::Record* byteorder = archive.find("byteorder")) {
    if (options.verify) {
      binder.verify(*byteorder);
    }
    if (record_text(archive, *byteorder) != "little") {
      archive.fail("its tensors are big-endian; only little-endian checkpoints are read");
    }
  }

  c10::IValue state = unpickle_state(
      record_text(archive, pickle),
      [&binder](const std::string& key) { return binder.placeholder(key); },
      [&archive](const std::string& what) { TORCH_CHECK(false, "cannot load ", archive.name(), ": ", what); });
  if (!options.keys.empty()) {
    state = select_keys(state, options.keys, where);
  }
  visit_state(state, binder, binder.path);

  if (options.verify && options.keys.empty()) {
    // A whole load checks every record, read or not.
    for (const ArchiveReader::Record& record : archive.records()) {
      binder.verify(record);
    }
  }
  return state;
}

} // namespace torch_ext::detail
