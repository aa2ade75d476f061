"""``save`` and ``load``: one checkpoint file, in ``torch.save``'s format."""

from __future__ import annotations

import os
from typing import Any, Sequence

from torch_ext import _C

__all__ = ["load", "save"]


def _keys(keys: Sequence[str] | None) -> list[str] | None:
    if isinstance(keys, str):
        raise TypeError("keys must be a sequence of dotted paths, not a str")
    return None if keys is None else list(keys)


def save(obj: Any, f: str | os.PathLike) -> None:
    """Write ``obj`` to the file ``f`` as ``torch.save`` does, durably.

    ``torch.load(f, weights_only=True)`` reads it back with the same types.
    Every record carries its CRC32; tensors that share a storage are written
    once. The file appears whole or not at all: it is written beside ``f``,
    fsync'd, then renamed over it. ``obj`` holds tensors, dicts (str, int,
    float or bool keys; ``OrderedDict`` kept with its ``_metadata``), lists,
    tuples, ``torch.Size``, None, bool, int, float and str; anything else
    raises ``TypeError`` naming its entry.
    """
    _C.save(obj, os.fspath(f))


def load(f: str | os.PathLike, *, verify: bool = True, keys: Sequence[str] | None = None) -> Any:
    """Read a file written by :func:`save` or ``torch.save``, running no code.

    Like ``torch.load(f, weights_only=True, mmap=True)``: tensors are views of
    the file mapped copy-on-write, and a pickle naming anything but tensors,
    containers and scalars is refused with an error naming it. Unlike it,
    every record read is checked against its CRC32 (``verify=False`` skips
    that, and then only what is touched is read). ``keys`` names entries by
    dotted path (``"model.fc.weight"``, ``"optim.state.0"``): only those are
    returned, in the file's nesting, and only their records are read.
    """
    return _C.load(os.fspath(f), verify, _keys(keys))
