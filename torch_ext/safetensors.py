"""safetensors files and Hugging Face's sharded folders, read and written in C++.

Files are those of ``safetensors.torch.save_file`` / ``load_file``: each
reads the other's, with the same keys, dtypes, shapes and bytes. Ours also
carry a CRC32 per tensor in ``__metadata__`` (``torch_ext.crc32.<name>``),
which the ``safetensors`` package ignores and our reader checks; a file
without them (any other writer's) loads unchecked, and
``SafetensorsFile(path).unverifiable`` names what could not be checked.

Reads map the file copy-on-write: tensors are views of it, and only the
tensors asked for are read. Writes are durable (a temporary file, fsync,
rename, folder fsync). A folder is Hugging Face's layout:
``model.safetensors.index.json`` and ``model-0000x-of-0000N.safetensors``, or
a lone ``model.safetensors``.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from torch_ext import _C

__all__ = [
    "DEFAULT_MAX_SHARD_SIZE",
    "FileWriter",
    "FolderWriter",
    "SafetensorsFile",
    "SafetensorsFolder",
    "TensorInfo",
    "Verification",
    "load_file",
    "load_folder",
    "parse_size",
    "save_file",
    "save_folder",
]

PathLike = Union[str, os.PathLike]
Size = Union[int, str]
Entry = Tuple[str, torch.dtype, Sequence[int]]

# huggingface_hub's default.
DEFAULT_MAX_SHARD_SIZE = "5GB"
_UNITS = {
    "": 1, "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
}


def parse_size(size: Size) -> int:
    """Bytes of a size: an int, or ``"5GB"`` (decimal units, as huggingface_hub reads them) or ``"2GiB"``."""
    if isinstance(size, bool):
        raise TypeError(f"a size is an int of bytes or a str such as '5GB', got {size!r}")
    if isinstance(size, int):
        value = size
    elif isinstance(size, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", size)
        unit = match.group(2).upper() if match else None
        if unit not in _UNITS:
            raise ValueError(f"a size is a number and a unit (KB, MB, GB, TB, KiB, MiB, GiB, TiB), got {size!r}")
        value = int(float(match.group(1)) * _UNITS[unit])
    else:
        raise TypeError(f"a size is an int of bytes or a str such as '5GB', got {type(size).__name__}")
    if value < 1:
        raise ValueError(f"a shard holds at least 1 byte, got {size!r}")
    return value


class TensorInfo(NamedTuple):
    """One tensor as its file's header describes it."""

    name: str
    dtype: str  # the format's: "F32", "BF16", "F8_E4M3", "F4", ...
    torch_dtype: Optional[torch.dtype]  # None for F6_E2M3 and F6_E3M2, which torch lacks
    shape: Tuple[int, ...]  # the header's, in elements (for F4, torch's last dimension is half)
    offset: int  # of its bytes in the file
    nbytes: int
    crc32: Optional[int]  # ours; None where the file has none: nothing checks it


class Failure(NamedTuple):
    name: str
    file: str
    expected: int  # the header's CRC32
    actual: int  # the data's


class Verification(NamedTuple):
    """What checking every CRC32 found: ``ok`` unless a tensor failed."""

    verified: List[str]
    unverifiable: List[str]  # no CRC32 in the file: nothing to check
    failed: List[Failure]

    @property
    def ok(self) -> bool:
        return not self.failed


def _info(info: Any) -> TensorInfo:
    return TensorInfo(info.name, info.dtype, info.scalar_type, tuple(info.shape), info.offset, info.nbytes, info.crc32)


def _verification(result: Any) -> Verification:
    return Verification(
        list(result.verified), list(result.unverifiable),
        [Failure(f.name, f.file, f.expected, f.actual) for f in result.failed])


def _keys(keys: Optional[Sequence[str]]) -> Optional[List[str]]:
    if isinstance(keys, str):
        raise TypeError("keys must be a sequence of tensor names, not a str")
    return None if keys is None else list(keys)


def _metadata(metadata: Optional[Mapping[str, str]]) -> List[Tuple[str, str]]:
    if metadata is None:
        return []
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"safetensors metadata maps str to str; got {key!r}: {value!r}")
    return list(metadata.items())


def _entries(entries: Iterable[Entry]) -> List[Tuple[str, torch.dtype, List[int]]]:
    return [(name, dtype, [int(size) for size in shape]) for name, dtype, shape in entries]


class _Tensors:
    """What a file and a folder both read, through ``self._impl``."""

    _impl: Any

    @property
    def path(self) -> str:
        return self._impl.path

    def keys(self) -> List[str]:
        """Tensor names, in the file's order (by offset; a folder's shard by shard), as ``load_file`` gives them."""
        return [info.name for info in self._impl.tensors]

    @property
    def tensors(self) -> List[TensorInfo]:
        return [_info(info) for info in self._impl.tensors]

    def tensor(self, name: str, *, verify: bool = True) -> torch.Tensor:
        """One tensor, a copy-on-write view of its file (its CRC32 checked first with ``verify``)."""
        return self._impl.tensor(name, verify)

    def load(self, *, verify: bool = True, keys: Optional[Sequence[str]] = None) -> Dict[str, torch.Tensor]:
        """``{name: tensor}`` in the file's order: every tensor, or those ``keys`` names."""
        return self._impl.load(verify, _keys(keys))

    def verify(self) -> Verification:
        """Checks every CRC32 and reports, raising for none."""
        return _verification(self._impl.verify())


class SafetensorsFile(_Tensors):
    """A safetensors file, its header read and checked; no tensor read until asked for.

    A damaged or hostile header (a huge length, offsets that overlap, leave
    holes or pass the end of the file, an unknown dtype, a key given twice,
    deep nesting, non-UTF-8) raises an error naming the file.
    """

    def __init__(self, path: PathLike) -> None:
        self._impl = _C.SafetensorsFile(os.fspath(path))

    def info(self, name: str) -> TensorInfo:
        return _info(self._impl.info(name))

    @property
    def metadata(self) -> Dict[str, str]:
        """``__metadata__`` without our CRC32 entries."""
        return self._impl.metadata

    @property
    def unverifiable(self) -> List[str]:
        """Tensors without a CRC32 in the file: what loading it cannot check."""
        return list(self._impl.unverifiable)


class SafetensorsFolder(_Tensors):
    """A folder in Hugging Face's layout, its index checked against its shards."""

    def __init__(self, folder: PathLike) -> None:
        self._impl = _C.SafetensorsFolder(os.fspath(folder))

    @property
    def shards(self) -> List[SafetensorsFile]:
        shards = []
        for shard in self._impl.shards:
            wrapped = SafetensorsFile.__new__(SafetensorsFile)
            wrapped._impl = shard
            shards.append(wrapped)
        return shards

    def shard_of(self, name: str) -> str:
        """The path of the shard holding ``name``."""
        return self._impl.shard_of(name).path

    @property
    def index_metadata(self) -> Dict[str, Any]:
        """The index's ``metadata`` (``total_size`` among it); empty for a lone ``model.safetensors``."""
        return {key: json.loads(value) for key, value in self._impl.index_metadata.items()}

    @property
    def total_size(self) -> Optional[int]:
        return self._impl.total_size


class FileWriter:
    """Writes one file tensor by tensor, so that one tensor at a time need be in memory.

    ``entries`` are ``(name, dtype, shape)``; the file orders them as the
    ``safetensors`` package does, and ``write`` takes the tensors in that
    ``order``. The file appears, durably, at ``commit``.
    """

    def __init__(self, path: PathLike, entries: Iterable[Entry], metadata: Optional[Mapping[str, str]] = None) -> None:
        self._impl = _C.SafetensorsWriter(os.fspath(path), _entries(entries), _metadata(metadata))

    @property
    def order(self) -> List[Entry]:
        return [(name, dtype, tuple(shape)) for name, dtype, shape in self._impl.order]

    def write(self, tensor: torch.Tensor) -> None:
        self._impl.write(tensor)

    def commit(self) -> None:
        self._impl.commit()


class FolderWriter:
    """Writes a folder in Hugging Face's layout tensor by tensor, shards of at most ``max_shard_size``.

    The entries are split into shards in their order, as huggingface_hub
    splits them (a tensor larger than the bound gets a shard of its own);
    ``write`` takes the tensors shard by shard in ``order``; ``commit`` writes
    the index last and removes an earlier save's files that this one does
    not use.
    """

    def __init__(
        self, folder: PathLike, entries: Iterable[Entry], *, max_shard_size: Size = DEFAULT_MAX_SHARD_SIZE,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> None:
        self._impl = _C.SafetensorsFolderWriter(
            os.fspath(folder), _entries(entries), parse_size(max_shard_size), _metadata(metadata))

    @property
    def order(self) -> List[Entry]:
        return [(name, dtype, tuple(shape)) for name, dtype, shape in self._impl.order]

    @property
    def shards(self) -> List[Tuple[str, List[str]]]:
        """Each shard's file name and the tensors it holds, in order."""
        return [(name, list(names)) for name, names in self._impl.shards]

    def write(self, tensor: torch.Tensor) -> None:
        self._impl.write(tensor)

    def commit(self) -> None:
        self._impl.commit()


def save_file(tensors: Mapping[str, torch.Tensor], path: PathLike, metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write a flat dict of str to CPU tensors to one file, durably.

    Refused with an error naming the entry, before anything is written: a
    nested dict or any non-tensor value, a dtype the format lacks (complex128,
    ...), and tensors that share memory, which ``safetensors.torch.save_file``
    refuses too. Non-contiguous tensors are written in row-major order.
    ``metadata`` (str to str) goes into ``__metadata__``, with ``"format": "pt"``
    unless it gives a format.
    """
    _C.save_safetensors(tensors, os.fspath(path), _metadata(metadata))


def load_file(path: PathLike, *, verify: bool = True, keys: Optional[Sequence[str]] = None) -> Dict[str, torch.Tensor]:
    """``SafetensorsFile(path).load(verify=verify, keys=keys)``."""
    return SafetensorsFile(path).load(verify=verify, keys=keys)


def save_folder(
    tensors: Mapping[str, torch.Tensor], folder: PathLike, *, max_shard_size: Size = DEFAULT_MAX_SHARD_SIZE,
    metadata: Optional[Mapping[str, str]] = None,
) -> None:
    """Write a flat dict of tensors (as :func:`save_file` takes it) to a folder in Hugging Face's layout."""
    _C.save_safetensors_folder(tensors, os.fspath(folder), parse_size(max_shard_size), _metadata(metadata))


def load_folder(folder: PathLike, *, verify: bool = True, keys: Optional[Sequence[str]] = None) -> Dict[str, torch.Tensor]:
    """``SafetensorsFolder(folder).load(verify=verify, keys=keys)``."""
    return SafetensorsFolder(folder).load(verify=verify, keys=keys)
