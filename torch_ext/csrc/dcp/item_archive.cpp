#include "item_archive.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace torch_ext::detail::dcp {

void write_item_archive(const PickledState& pickled, const ArchiveWriter::Sink& sink) {
  ArchiveWriter archive(sink, "archive");
  archive.write_record("data.pkl", pickled.pickle.data(), pickled.pickle.size());
  archive.write_record(".format_version", "1", 1);
  archive.write_record(".storage_alignment", "64", 2);
  archive.write_record("byteorder", "little", 6);
  for (size_t key = 0; key < pickled.storages.size(); ++key) {
    const c10::Storage& storage = pickled.storages[key];
    archive.write_record("data/" + std::to_string(key), storage.data(), storage.nbytes());
  }
  archive.write_record("version", "3\n", 2);
  archive.finish();
}

PickledState pickle_tensor_item(const at::Tensor& tensor) {
  at::Tensor item = tensor.detach().resolve_conj().resolve_neg().contiguous();
  if (item.storage_offset() != 0 || item.storage().nbytes() != item.nbytes()) {
    // A view of a larger storage: a storage of just its bytes, aliasing them.
    c10::Storage exact(
        c10::Storage::use_byte_size_t(),
        item.nbytes(),
        c10::DataPtr(item.data_ptr(), item.device()),
        /*allocator=*/nullptr,
        /*resizable=*/false);
    at::Tensor view = at::empty({0}, item.options());
    view.set_(exact, 0, item.sizes(), item.strides());
    item = view;
  }
  return pickle_state(item);
}

} // namespace torch_ext::detail::dcp
