"""torch_ext.dcp's FileSystemWriter and FileSystemReader.

The StorageWriter and StorageReader that ``dcp.save``, ``dcp.async_save``
and ``dcp.load`` take, with upstream's planners: Python speaks DCP's
protocol (plans, the planner's resolve and commit calls, which need the
GIL); the C++ layer writes and reads the bytes, without the GIL.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import uuid
from typing import Any

from torch.distributed.checkpoint.filesystem import FileSystem
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import (
    LoadItemType,
    LoadPlan,
    LoadPlanner,
    SavePlan,
    SavePlanner,
    WriteItemType,
)
from torch.distributed.checkpoint.storage import StorageReader, StorageWriter, WriteResult
from torch.futures import Future

from torch_ext import _C

__all__ = ["FileSystemReader", "FileSystemWriter"]


@dataclasses.dataclass(frozen=True)
class _RankFiles:
    """A save plan's storage_data: the rank whose data files it writes."""

    rank: int


def _done(value: Any) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


class FileSystemWriter(StorageWriter):
    """Writes ``dcp.save`` and ``dcp.async_save`` into the folder ``path``.

    The folder is what upstream's ``FileSystemWriter`` writes (rank ``r``'s
    items in ``__<r>_0.distcp`` to ``__<r>_<thread_count - 1>.distcp``, dealt
    as upstream deals them, and one ``.metadata``), read by upstream's
    ``FileSystemReader``, ``dcp_to_torch_save``, ``torch_ext.load_dcp`` and
    this module's ``FileSystemReader``. Each rank's items are serialized and
    written by ``thread_count`` C++ threads while the GIL is released.

    The folder's commit rule is the C++ layer's: the coordinator removes the
    folder's ``.metadata`` durably before any rank writes, each data file is
    written into a temporary file renamed into place, and ``.metadata`` is
    written last; with ``sync_files`` each of them is fsync'd first and the
    folder after, so that whatever the moment of a crash, the folder holds
    the previous checkpoint, the new one, or no ``.metadata``. One
    ``.metadata`` for every rank: ``use_collectives=False`` (a metadata file
    per rank) is refused.
    """

    def __init__(self, path: str | os.PathLike, thread_count: int = 1, sync_files: bool = True) -> None:
        super().__init__()
        _C.dcp_check_write_options(thread_count)
        self.path = pathlib.Path(path)
        self.thread_count = thread_count
        self.sync_files = sync_files
        self.save_id = str(uuid.uuid4())

    def reset(self, checkpoint_id: str | os.PathLike | None = None) -> None:
        if checkpoint_id:
            self.path = pathlib.Path(checkpoint_id)
        self.save_id = str(uuid.uuid4())

    def set_up_storage_writer(self, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        if not kwargs.get("use_collectives", True):
            raise ValueError(
                "torch_ext.dcp.FileSystemWriter commits one .metadata for all ranks, which needs collectives; "
                "got use_collectives=False"
            )

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        return plan

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        # On the coordinator, before any rank writes.
        _C.dcp_prepare_folder(os.fspath(self.path))
        return [dataclasses.replace(plan, storage_data=_RankFiles(rank)) for rank, plan in enumerate(plans)]

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        items = []
        for item in plan.items:
            data = planner.resolve_data(item)
            if item.type == WriteItemType.BYTE_IO:
                items.append((item.index, data.getbuffer()))
            else:
                items.append((item.index, data.detach().cpu()))
        results = _C.dcp_write_data_files(
            os.fspath(self.path), plan.storage_data.rank, items, self.thread_count, self.sync_files
        )
        return _done(results)

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        metadata.version = _C.DCP_VERSION
        metadata.storage_data = {result.index: result.storage_data for rank in results for result in rank}
        metadata.storage_meta = self.storage_meta()
        _C.dcp_commit_metadata(os.fspath(self.path), metadata, self.sync_files)

    def storage_meta(self) -> StorageMeta:
        return StorageMeta(checkpoint_id=self.checkpoint_id, save_id=self.save_id)

    @property
    def checkpoint_id(self) -> pathlib.Path:
        return self.path

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike) -> bool:
        return FileSystem.validate_checkpoint_id(checkpoint_id)


class FileSystemReader(StorageReader):
    """Reads a DCP folder for ``dcp.load`` (any DCP folder upstream's
    ``FileSystemWriter`` or this module's writer wrote, compressed with
    upstream's ``ZStandard`` or not).

    ``.metadata`` is read by torch_ext's restricted unpickler: a pickle
    naming anything but DCP's metadata classes is refused, naming the
    global, and nothing of it runs. Items are read from the mapped data
    files into the planner's tensors by C++ threads, without the GIL; with
    ``verify``, every item read is checked against its records' CRC32s and a
    damaged one raises an error naming the folder, the data file and the
    key. Non-tensor values are handed to the planner, which unpickles them
    (upstream's ``DefaultLoadPlanner`` with ``torch.load(weights_only=False)``).
    """

    def __init__(self, path: str | os.PathLike, verify: bool = True) -> None:
        super().__init__()
        self.path = pathlib.Path(path)
        self.verify = verify
        self.load_id = str(uuid.uuid4())
        self._reader: _C.DcpCheckpointReader | None = None

    def reset(self, checkpoint_id: str | os.PathLike | None = None) -> None:
        self._reader = None
        if checkpoint_id:
            self.path = pathlib.Path(checkpoint_id)
        self.load_id = str(uuid.uuid4())

    def _open(self) -> _C.DcpCheckpointReader:
        if self._reader is None:
            self._reader = _C.DcpCheckpointReader(os.fspath(self.path), self.verify)
        return self._reader

    def read_metadata(self) -> Metadata:
        metadata = self._open().metadata()
        if metadata.storage_meta is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata

    def set_up_storage_reader(self, metadata: Metadata, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        self._open()

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        return plan

    def prepare_global_plan(self, plans: list[LoadPlan]) -> list[LoadPlan]:
        return plans

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        reader = self._open()
        regions, targets = [], []
        for item in plan.items:
            if item.type == LoadItemType.BYTE_IO:
                planner.load_bytes(item, io.BytesIO(reader.read_serialized(item.storage_index)))
            else:
                target = planner.resolve_tensor(item).detach()
                regions.append((item.storage_index, item.storage_offsets, item.lengths, target))
                targets.append((item, target))
        reader.read_regions_into(regions)
        for item, target in targets:
            planner.commit_tensor(item, target)
        return _done(None)

    @property
    def checkpoint_id(self) -> pathlib.Path:
        return self.path

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike) -> bool:
        return FileSystem.validate_checkpoint_id(checkpoint_id)
