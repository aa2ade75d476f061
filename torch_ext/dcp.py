"""DCP's standard format, read and written in C++.

The folders that ``torch.distributed.checkpoint.save`` writes with
``FileSystemWriter`` (``.metadata`` and ``__<rank>_<i>.distcp`` files): read
and written in one process without a process group (``load_dcp``,
``save_dcp``), and by ``dcp.save``, ``dcp.async_save`` and ``dcp.load``
through ``FileSystemWriter`` and ``FileSystemReader``, this module's
StorageWriter and StorageReader.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Sequence

import torch

from torch_ext import _C

__all__ = [
    "FileSystemReader",
    "FileSystemWriter",
    "load_dcp",
    "load_sharded",
    "local_shards",
    "save_dcp",
    "save_sharded",
]

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


def local_shards(parts: Sequence[tuple[torch.Tensor, Sequence[int]]], global_shape: Sequence[int]) -> Any:
    """This rank's parts of a larger tensor, as a state dict value.

    ``parts`` are ``(tensor, offsets)``: each tensor holds the box of the
    global tensor (of ``global_shape``) that starts at its offsets. The
    result (a ``torch.classes.torch_ext.LocalShards``) is what ``save_sharded``
    saves as chunks of one tensor and what ``load_sharded`` fills in place.
    """
    return torch.classes.torch_ext.LocalShards(
        [tensor for tensor, _ in parts], [list(offsets) for _, offsets in parts], list(global_shape)
    )


def _with_local_shards(value: Any, cpu: bool) -> Any:
    """``value`` with each DTensor as the LocalShards of its local part (a
    DTensor replicated on every mesh dim: its local tensor). With ``cpu``,
    local parts on another device are copied to the CPU."""
    from torch.distributed.tensor import DTensor, Replicate
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    def convert(item: Any) -> Any:
        if isinstance(item, DTensor):
            local = item.to_local()
            if cpu and local.device.type != "cpu":
                local = local.cpu()
            if all(isinstance(placement, Replicate) for placement in item.placements):
                return local
            _, offsets = compute_local_shape_and_global_offset(item.shape, item.device_mesh, item.placements)
            return local_shards([(local, offsets)], item.shape)
        if type(item) is dict:
            return {key: convert(entry) for key, entry in item.items()}
        if type(item) is list:
            return [convert(entry) for entry in item]
        return item

    return convert(value)


def save_sharded(
    state_dict: dict[str, Any],
    path: str | os.PathLike,
    *,
    store: Any = None,
    rank: int | None = None,
    world_size: int | None = None,
    timeout: datetime.timedelta = datetime.timedelta(minutes=10),
    thread_count: int = 1,
    compress: bool = False,
    max_chunk_bytes: int = 64 << 20,
) -> None:
    """Collective: every rank saves its part of the state into the folder ``path``.

    What ``dcp.save`` with a ``FileSystemWriter`` writes from as many ranks
    (``dcp.load`` reads it into DTensors of any layout), written by C++ with
    the GIL released (``torch_ext::dcp::save_sharded``). DTensors are saved
    as their local shards, values of ``local_shards`` as theirs; a value that
    several ranks hold (a plain tensor, a non-tensor value) is written once,
    by the lowest rank that holds it. The ranks agree through ``store``
    (default: the process group's store), rank 0 checks every rank's parts
    before anything is written, and writes ``.metadata`` only once every
    rank's data is durable. ``rank`` and ``world_size`` default to the
    process group's. A part of more than ``max_chunk_bytes`` is saved as
    chunks of whole rows of at most that size (0: one chunk per part), so
    that a verified resharding load reads little past the rows it needs.
    """
    if store is None or rank is None or world_size is None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            from torch.distributed.distributed_c10d import _get_default_store

            store = _get_default_store() if store is None else store
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
        else:
            rank, world_size = (0, 1) if rank is None and world_size is None else (rank, world_size)
    _C.save_sharded(
        _with_local_shards(state_dict, cpu=True),
        os.fspath(path),
        store,
        rank,
        world_size,
        timeout.total_seconds(),
        thread_count,
        compress,
        max_chunk_bytes,
    )


def load_sharded(path: str | os.PathLike, into: dict[str, Any], *, verify: bool = True) -> None:
    """Fill the tensors and DTensors of ``into`` in place from the DCP checkpoint ``path``.

    A resharding load on each rank on its own (no collective): each DTensor
    (on the CPU), ``local_shards`` value and tensor reads only the regions of
    the saved chunks its local part overlaps, whatever the layout it was
    saved in. A key that the checkpoint lacks, or a global shape or dtype
    other than the saved one, raises a ValueError naming the key. Non-tensor
    values are not read (``load_dcp(path, keys=...)`` reads them).
    """
    _C.load_sharded(os.fspath(path), _with_local_shards(into, cpu=False), verify)
