"""``save`` and ``load``: one checkpoint file, in ``torch.save``'s format."""

from __future__ import annotations

import os
from typing import Any

from torch_ext import _C

__all__ = ["load", "save"]


def save(obj: Any, f: str | os.PathLike) -> None:
    """Write ``obj`` to the file ``f`` as ``torch.save`` does, durably.

    ``torch.load(f, weights_only=True)`` reads it back with the same types.
    Every record carries its CRC32; tensors that share a storage are written
    once. The file appears whole or not at all: it is written beside ``f``,
    fsync'd, then renamed over it. ``obj`` holds tensors, dicts (str, int,
    float or bool keys; ``OrderedDict`` kept with its ``_metadata``), lists,
    tuples, ``torch.Size``, None, bool, int, float and str; anything else
    raises ``TypeError`` naming its entry by its key path.
    """
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
