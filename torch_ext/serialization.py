"""``save`` and ``load``: one checkpoint, in ``torch.save``'s format or safetensors."""

from __future__ import annotations

import os
from typing import Any

from torch_ext import _C, safetensors

__all__ = ["load", "save"]


def save(
    obj: Any,
    f: str | os.PathLike,
    *,
    format: str = "torch",
    metadata: dict[str, str] | None = None,
    max_shard_size: int | str | None = None,
) -> None:
    """Write ``obj`` to ``f`` durably, in ``torch.save``'s format or safetensors.

    ``format="torch"`` (the default) writes ``torch.save``'s format:
    ``torch.load(f, weights_only=True)`` reads it back with the same types.
    Every record carries its CRC32; tensors that share a storage are written
    once. ``obj`` holds tensors, dicts (str, int, float or bool keys;
    ``OrderedDict`` kept with its ``_metadata``), lists, tuples,
    ``torch.Size``, None, bool, int, float and str; anything else raises
    ``TypeError`` naming its entry by its key path.

    ``format="safetensors"`` writes what ``safetensors.torch.load_file``
    reads: ``obj`` is a flat dict of str to tensors (see
    :func:`torch_ext.safetensors.save_file` for what it refuses), ``metadata``
    a str to str map for its ``__metadata__``. With ``max_shard_size`` (bytes,
    or ``"5GB"``), ``f`` is a folder in Hugging Face's sharded layout
    (:func:`torch_ext.safetensors.save_folder`).

    Either way the file appears whole or not at all: it is written beside
    ``f``, fsync'd, then renamed over it.
    """
    if format == "safetensors":
        if max_shard_size is None:
            safetensors.save_file(obj, f, metadata)
        else:
            safetensors.save_folder(obj, f, max_shard_size=max_shard_size, metadata=metadata)
        return
    if format != "torch":
        raise ValueError(f"format must be 'torch' or 'safetensors', got {format!r}")
    if metadata is not None or max_shard_size is not None:
        raise ValueError("metadata and max_shard_size are safetensors' options; torch.save's format has neither")
    _C.save(obj, os.fspath(f))


def load(f: str | os.PathLike, **options: Any) -> Any:
    """Read a file written by :func:`save` or ``torch.save``, running no code.

    Like ``torch.load(f, weights_only=True, mmap=True)``: tensors are views of
    the file mapped copy-on-write, and a pickle naming anything but tensors,
    containers and scalars is refused with an error naming it. Unlike it,
    every record read is checked against its CRC32.

    Options (keywords; their defaults are C++'s ``ReadOptions``):
    ``verify`` (default True; False skips the CRC32 checks, and then only
    what is touched is read) and ``keys``, key paths as errors print them:
    the dict keys and list indices on the way to an entry, joined by dots
    (``"model.fc.weight"``, ``"optim.state.0"``, ``"optim.param_groups.0.lr"``).
    With ``keys`` only those entries are returned, in the file's nesting, and
    only their records are read.
    """
    return _C.load(os.fspath(f), **options)
