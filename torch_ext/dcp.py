"""DCP's standard format, read and written in C++.

The folders that ``torch.distributed.checkpoint.save`` writes with
``FileSystemWriter`` (``.metadata`` and ``__<rank>_<i>.distcp`` files): read
and written in one process without a process group (``load_dcp``,
``save_dcp``), and by ``dcp.save``, ``dcp.async_save`` and ``dcp.load``
through ``FileSystemWriter`` and ``FileSystemReader``, this module's
StorageWriter and StorageReader.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from torch_ext import _C

__all__ = ["FileSystemReader", "FileSystemWriter", "load_dcp", "save_dcp"]

_STORAGE = ("FileSystemReader", "FileSystemWriter")


def __getattr__(name: str) -> Any:
    # Imported when asked for: they import torch.distributed.checkpoint,
    # which `import torch_ext` does not need.
    if name in _STORAGE:
        from torch_ext import _dcp_storage

        return getattr(_dcp_storage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_dcp(
    path: str | os.PathLike, keys: Sequence[str] | None = None, verify: bool = True
) -> dict[str, Any]:
    """Read the DCP checkpoint in the folder ``path`` into one state dict.

    What ``dcp_to_torch_save(path, f)`` then ``torch.load(f)`` give, without
    writing a file: nested dicts and lists rebuilt from the metadata's
    ``planner_data``, every tensor whole (its saved chunks put together),
    non-tensor values as saved. Runs no code: ``.metadata`` and the
    non-tensor values are read by the restricted unpickler, and a pickle
    naming anything but DCP's metadata classes (or, for values, tensors,
    containers and scalars) is refused with an error naming it. With
    ``verify``, every record of every item read is checked against its
    CRC32; a damaged item raises an error naming the folder, the ``.distcp``
    file and the key. ``keys`` names entries by dotted path
    (``"model.fc.weight"``, ``"optim.state"``): only those are read.
    Tensors of items saved as they are (not compressed) and whole are views
    of the mapped file, copy-on-write.
    """
    if isinstance(keys, str):
        raise TypeError("keys must be a sequence of dotted paths, not a str")
    return _C.load_dcp(os.fspath(path), verify, None if keys is None else list(keys))


def save_dcp(
    state_dict: dict[str, Any],
    path: str | os.PathLike,
    *,
    thread_count: int = 1,
    compress: bool = False,
) -> None:
    """Write ``state_dict`` into the folder ``path`` as one process's ``dcp.save``.

    ``dcp.load``, ``FileSystemReader`` and ``dcp_to_torch_save`` read it.
    Keys are flattened as upstream flattens them; each tensor and each
    non-tensor leaf is one item, written by ``thread_count`` threads into as
    many data files; ``compress`` compresses each item with zstd as
    upstream's ``ZStandard`` extension does. Durable: the data files are
    fsync'd, then ``.metadata`` is written last, so that a folder that held a
    checkpoint holds it or the new one whatever the moment of a crash.
    Values are those ``torch_ext.save`` takes; tensors on the CPU.
    """
    _C.save_dcp(state_dict, os.fspath(path), thread_count, compress)
