"""Any checkpoint, opened through the library's readers: what it holds, and its entries read a few at a time.

The format is told by the library's one rule (``torch_ext._C.detect_format``:
a torch.save file, a safetensors file, a DCP folder, a safetensors folder in
Hugging Face's layout, a CheckpointManager root). Listing reads no tensor
data. Entries are the leaves of upstream DCP's flattening (``.``-joined keys,
as ``.metadata`` keys them and as the library's ``keys=`` takes them);
reading goes batch by batch, each batch through a fresh reader that is
dropped before the next, so that the source's pages mapped at once stay
within a batch.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

import torch_ext
from torch_ext import _C
from torch_ext import safetensors as st
from torch_ext.cli.output import Progress

# The bytes of tensors read at once by the streaming commands: with a
# tensor larger than it, that tensor alone. A conversion's memory above what
# Python and torch take is at most about three times the larger of this and
# the largest tensor: a DCP tensor saved in chunks is assembled whole while
# its chunks' pages are mapped, and a chunk that upstream's writer left
# unaligned in its data file is copied first.
STREAM_BYTES = 64 * 2**20

DiskFormat = _C.DiskFormat


@dataclasses.dataclass(frozen=True)
class Entry:
    """One leaf: a tensor, or a value (a scalar, a str, a list of them, ...)."""

    key: str  # its flattened key
    path: Tuple[Any, ...]  # the dict keys and list indices on the way to it
    dtype: Optional[torch.dtype] = None  # a tensor's (None for safetensors' F6 types, which torch lacks)
    dtype_name: Optional[str] = None  # "float32", or safetensors' name where torch has none; None for a value
    shape: Optional[Tuple[int, ...]] = None
    nbytes: int = 0
    value: Any = None  # a value, where listing read it
    chunks: int = 1  # a DCP tensor's saved chunks

    @property
    def is_tensor(self) -> bool:
        return self.dtype_name is not None


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def tensor_entry(key: str, path: Tuple[Any, ...], dtype: torch.dtype, shape: Sequence[int], **fields: Any) -> Entry:
    shape = tuple(int(size) for size in shape)
    nbytes = torch.Size(shape).numel() * dtype.itemsize
    return Entry(key, path, dtype, dtype_name(dtype), shape, nbytes, **fields)


def disk_bytes(path: str) -> int:
    """The bytes of the files at ``path``: a file, or every file under a folder."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for folder, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(folder, name)) for name in files)
    return total


class Checkpoint:
    """A checkpoint of one format: ``entries`` in its order, ``metadata``, and reads of entries."""

    format: "DiskFormat"

    def __init__(self, path: str) -> None:
        self.path = path
        self.entries: List[Entry] = []
        self.metadata: Dict[str, Any] = {}

    @property
    def description(self) -> str:
        return _C.describe_format(self.format)

    def read(self, entries: Sequence[Entry], verify: bool = True) -> Dict[str, Any]:
        """``{key: value}`` of ``entries``, read by a reader of their own."""
        raise NotImplementedError

    def read_state(self, keys: Optional[Sequence[str]] = None, verify: bool = True) -> Any:
        """The whole state (or what ``keys`` name) as the library's load gives it, nesting kept."""
        return torch_ext.load(self.path, verify=verify, keys=keys)

    def batches(self, entries: Sequence[Entry], verify: bool = True,
                limit: int = STREAM_BYTES) -> Iterator[Tuple[List[Entry], Dict[str, Any]]]:
        """Each run of ``entries`` (``runs``) with its ``read``.

        Drop a batch's values before asking for the next: that frees its memory and unmaps its reader.
        """
        for run in runs(entries, limit):
            yield run, self.read(run, verify)

    def checksums(self, progress: Optional[Progress] = None) -> "Checksums":
        """Every checksum the format carries, checked: a failing entry does not hide the next."""
        raise NotImplementedError

    def _check_by_batches(self, entries: Sequence[Entry], progress: Optional[Progress]) -> "Checksums":
        """Entries read verified, batch by batch; a batch that fails is read again entry by entry to name each."""
        result = Checksums()

        def check(run: List[Entry]) -> None:
            try:
                self.read(run, verify=True)
                result.verified.extend(entry.key for entry in run)
            except Exception as error:
                if len(run) == 1:
                    result.failed.append(one_line(error))
                    return
                for entry in run:
                    check([entry])

        for run in runs(entries, STREAM_BYTES):
            check(run)
            _update(progress, tensor_bytes(run))
        return result


def runs(entries: Sequence[Entry], limit: int) -> Iterator[List[Entry]]:
    """Consecutive runs of ``entries`` of at most ``limit`` bytes of tensors; a larger tensor alone."""
    run: List[Entry] = []
    size = 0
    for entry in entries:
        if run and size + entry.nbytes > limit:
            yield run
            run, size = [], 0
        run.append(entry)
        size += entry.nbytes
    if run:
        yield run


def _update(progress: Optional[Progress], count: int) -> None:
    if progress is not None:
        progress.update(count)


def tensor_bytes(entries: Sequence[Entry]) -> int:
    return sum(entry.nbytes for entry in entries)


@dataclasses.dataclass
class Checksums:
    """What checking a checkpoint's checksums found: entries verified, those nothing could check, failures."""

    verified: List[str] = dataclasses.field(default_factory=list)
    unverifiable: List[str] = dataclasses.field(default_factory=list)
    failed: List[str] = dataclasses.field(default_factory=list)  # one line each, naming the file

    @property
    def ok(self) -> bool:
        return not self.failed


def one_line(error: BaseException) -> str:
    """An error as one line: the library's messages name the file."""
    text = str(error).strip() or type(error).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def flat_entries(state: Any) -> List[Entry]:
    """The leaves of a loaded state, by upstream DCP's flattening (``_C.flatten_state_dict``)."""
    entries = []
    for key, path, value in _C.flatten_state_dict(state):
        if isinstance(value, torch.Tensor):
            entries.append(tensor_entry(key, path, value.dtype, value.shape))
        else:
            entries.append(Entry(key, path, value=value))
    return entries


class TorchSaveCheckpoint(Checkpoint):
    format = DiskFormat.TorchSave

    def __init__(self, path: str) -> None:
        super().__init__(path)
        # Unverified, the load reads the pickle and maps the rest: no tensor's bytes.
        self.entries = flat_entries(torch_ext.load(path, verify=False))

    def read(self, entries: Sequence[Entry], verify: bool = True) -> Dict[str, Any]:
        leaves = self._leaves([entry.key for entry in entries], verify)
        missing = [entry for entry in entries if entry.key not in leaves]
        if missing:
            # A list of tensors and values, cut by the keys, may flatten otherwise than whole: read whole.
            leaves.update(self._leaves([".".join(map(str, entry.path[:-1])) for entry in missing], verify))
        return {entry.key: leaves[entry.key] for entry in entries}

    def _leaves(self, keys: List[str], verify: bool) -> Dict[str, Any]:
        state = torch_ext.load(self.path, verify=verify, keys=keys)
        return {key: value for key, _, value in _C.flatten_state_dict(state)}

    def checksums(self, progress: Optional[Progress] = None) -> Checksums:
        try:
            # A whole load checks every record, read or not.
            torch_ext.load(self.path, verify=True)
        except Exception as error:
            found = self._check_by_batches(self.entries, None)
            if not found.failed:  # a record that no entry reads
                found.failed.append(one_line(error))
            return found
        finally:
            _update(progress, tensor_bytes(self.entries))
        return Checksums(verified=[entry.key for entry in self.entries])


class DcpCheckpoint(Checkpoint):
    format = DiskFormat.Dcp

    def __init__(self, path: str) -> None:
        super().__init__(path)
        metadata = _C.dcp_metadata(path)
        for key, object_path, dtype, shape, chunks, _ in metadata["entries"]:
            if dtype is None:
                self.entries.append(Entry(key, tuple(object_path)))
            else:
                self.entries.append(tensor_entry(key, tuple(object_path), dtype, shape, chunks=chunks))
        self.metadata = {"version": metadata["version"], "save_id": metadata["save_id"],
                         "data files": dict(metadata["files"])}

    def read(self, entries: Sequence[Entry], verify: bool = True) -> Dict[str, Any]:
        return _C.load_dcp_entries(self.path, [entry.key for entry in entries], verify)

    def checksums(self, progress: Optional[Progress] = None) -> Checksums:
        return self._check_by_batches(self.entries, progress)


def _safetensors_entries(reader: st.SafetensorsFile | st.SafetensorsFolder) -> List[Entry]:
    entries = []
    for info in reader.tensors:
        if info.torch_dtype is None:  # F6_E2M3, F6_E3M2
            entries.append(Entry(info.name, (info.name,), None, info.dtype, tuple(info.shape), info.nbytes))
            continue
        shape = tuple(info.shape)
        if info.dtype == "F4":
            # The header counts single values, torch's dtype pairs them: the reader knows the shape
            # (an unverified view of the mapping, whose bytes it does not read).
            shape = tuple(reader.tensor(info.name, verify=False).shape)
        entries.append(Entry(info.name, (info.name,), info.torch_dtype, dtype_name(info.torch_dtype), shape,
                             info.nbytes))
    return entries


def _checksums(verification: st.Verification) -> Checksums:
    return Checksums(
        list(verification.verified), list(verification.unverifiable),
        [f"the safetensors file '{failure.file}': tensor '{failure.name}' fails its CRC32 check: "
         f"the file says 0x{failure.expected:08x}, its data has 0x{failure.actual:08x}"
         for failure in verification.failed])


class SafetensorsFileCheckpoint(Checkpoint):
    format = DiskFormat.Safetensors

    def __init__(self, path: str) -> None:
        super().__init__(path)
        file = st.SafetensorsFile(path)
        self.entries = _safetensors_entries(file)
        self.metadata = dict(file.metadata)

    def read(self, entries: Sequence[Entry], verify: bool = True) -> Dict[str, Any]:
        return st.load_file(self.path, verify=verify, keys=[entry.key for entry in entries])

    def checksums(self, progress: Optional[Progress] = None) -> Checksums:
        result = _checksums(st.SafetensorsFile(self.path).verify())
        _update(progress, tensor_bytes(self.entries))
        return result


class SafetensorsFolderCheckpoint(Checkpoint):
    format = DiskFormat.SafetensorsFolder

    def __init__(self, path: str) -> None:
        super().__init__(path)
        folder = st.SafetensorsFolder(path)
        self.entries = _safetensors_entries(folder)
        self.metadata = dict(folder.index_metadata)
        self.metadata["shards"] = [os.path.basename(shard.path) for shard in folder.shards]
        if len(folder.shards) == 1:
            self.metadata.update(folder.shards[0].metadata)

    def read(self, entries: Sequence[Entry], verify: bool = True) -> Dict[str, Any]:
        return st.load_folder(self.path, verify=verify, keys=[entry.key for entry in entries])

    def checksums(self, progress: Optional[Progress] = None) -> Checksums:
        result = _checksums(st.SafetensorsFolder(self.path).verify())
        _update(progress, tensor_bytes(self.entries))
        return result


@dataclasses.dataclass
class Step:
    """A step folder of a CheckpointManager root, as the manager's commit rule sees it."""

    step: int
    path: str
    committed: bool
    world_size: Optional[int]  # what its commit file says; None if uncommitted or unreadable
    rank_files: List[str]
    bytes: int
    time: float  # its commit's (the commit file's mtime), else the folder's latest change


class ManagerRoot:
    """A CheckpointManager root: its steps, read without a manager (whose construction cleans up)."""

    format = DiskFormat.ManagerRoot

    def __init__(self, path: str) -> None:
        self.path = path
        self.steps: List[Step] = []
        for folder in _C.step_folders(path):
            if folder.committed:
                time = os.stat(folder.commit_file).st_mtime
            else:
                time = max([os.stat(folder.path).st_mtime] +
                           [entry.stat().st_mtime for entry in os.scandir(folder.path)])
            self.steps.append(Step(folder.step, folder.path, folder.committed, folder.world_size,
                                   list(folder.rank_files), disk_bytes(folder.path), time))

    @property
    def description(self) -> str:
        return _C.describe_format(self.format)


_READERS = {
    DiskFormat.TorchSave: TorchSaveCheckpoint,
    DiskFormat.Dcp: DcpCheckpoint,
    DiskFormat.Safetensors: SafetensorsFileCheckpoint,
    DiskFormat.SafetensorsFolder: SafetensorsFolderCheckpoint,
    DiskFormat.ManagerRoot: ManagerRoot,
}


def open_any(path: str | os.PathLike) -> Checkpoint | ManagerRoot:
    """The checkpoint or root at ``path``, in the format the library tells from what is on disk."""
    path = os.fspath(path)
    return _READERS[_C.detect_format(path)](path)


def open_checkpoint(path: str | os.PathLike, command: str) -> Checkpoint:
    """A checkpoint, not a root: a root holds one per step."""
    opened = open_any(path)
    if isinstance(opened, ManagerRoot):
        raise ValueError(
            f"'{opened.path}' is {opened.description}: {command} one of its steps' files, "
            f"<root>/step_<n>/checkpoint_<rank>.pt")
    return opened


def path_prefixes(path: Tuple[Any, ...]) -> Iterator[str]:
    for end in range(1, len(path) + 1):
        yield ".".join(str(item) for item in path[:end])


def select(entries: Sequence[Entry], keys: Optional[Sequence[str]], where: str) -> List[Entry]:
    """The entries ``keys`` name: an entry's key, or a container above it (``model`` names ``model.fc.weight``).

    As the library's ``keys=`` reads them against the structure: a key that
    names nothing is an error naming all such keys.
    """
    if not keys:
        return list(entries)
    wanted = set(keys)
    named = set()
    selected = []
    for entry in entries:
        hits = wanted.intersection(path_prefixes(entry.path))
        if hits:
            named |= hits
            selected.append(entry)
    missing = [key for key in keys if key not in named]
    if missing:
        raise ValueError(f"'{where}' has no entry " + ", ".join(f"'{key}'" for key in missing))
    return selected
