"""``AsyncCheckpointer``: the C++ checkpointer, ``torch.classes.torch_ext.AsyncCheckpointer``."""

from __future__ import annotations

import os
from typing import Any

import torch

from torch_ext import _C

__all__ = ["AsyncCheckpointer"]


class AsyncCheckpointer:
    """Saves state dicts asynchronously, in upstream DCP's layout and format.

    Mirrors ``torch.distributed.checkpoint._experimental``'s
    ``AsyncCheckpointer`` with a ``CheckpointWriter``: each rank writes
    ``<path>/checkpoint_<rank>.pt`` in ``torch.save``'s format, which
    upstream's ``CheckpointReader`` and ``torch.load`` read. Staging and
    writing run on C++ threads, without the GIL.

    Arguments (their defaults and bounds are C++'s, in
    ``<torch_ext/save_options.h>``, which the TorchScript class declares):
    ``rank`` and ``world_size`` (default 0 of 1), ``barrier_host``,
    ``barrier_port`` and ``barrier_timeout_secs``, then, as keywords only,
    the save options it shares with ``CheckpointManager``:
    ``staging_threads``, ``max_staging_bytes`` and ``writer_nice``.

    ``max_staging_bytes`` bounds the memory a save stages into (at least
    1 MiB; 0, the default, for no bound: the whole state dict is copied and
    the copy kept for the next save). A larger state dict is staged and
    written in waves into the same file; its ``stage_future`` then completes
    once the last wave is staged, so waiting for it waits for all but the last
    waves to be written.

    ``writer_nice`` (default 10, in [0, 19]) is the nice value of the writer
    thread on Linux: it takes the CPU the training loop leaves free, so that
    the loop runs at its own speed during a save; 0 shares the CPU evenly.

    With ``barrier_host``, rank 0 serves a c10d ``TCPStore`` at
    ``barrier_host:barrier_port`` and a save's write future completes only
    once every rank has written its file.

    Example::

        >>> checkpointer = torch_ext.AsyncCheckpointer()
        >>> stage_future, write_future = checkpointer.save("ckpt/step_1", model.state_dict())
        >>> stage_future.wait()   # the tensors may change from here on
        >>> write_future.wait()   # durably on disk
        >>> state_dict = checkpointer.load("ckpt/step_1")
    """

    def __init__(self, *args: Any, **options: Any) -> None:
        # The TorchScript class declares the arguments, with C++'s defaults.
        self._impl = torch.classes.torch_ext.AsyncCheckpointer(*args, **options)

    def save(
        self, path: str | os.PathLike, state_dict: dict[str, Any]
    ) -> tuple[torch._C.Future, torch._C.Future]:
        """Start saving ``state_dict``; return ``(stage_future, write_future)``.

        Waits first for the previous save's write and raises its error, as
        upstream does. ``stage_future`` completes with None once the tensors
        are copied (they may change from then on); ``write_future`` once the
        file is durably written (and, with a barrier, every rank's). Either
        fails with the error that stopped it.
        """
        return _C._save(self._impl, os.fspath(path), state_dict)

    def load(self, path: str | os.PathLike, **options: Any) -> dict[str, Any]:
        """Read ``<path>/checkpoint_<rank>.pt`` (ours or upstream's) as :func:`torch_ext.load` reads a file.

        Takes its options, ``verify`` and ``keys``.
        """
        return _C._load(self._impl, os.fspath(path), **options)

    def close(self) -> None:
        """Wait for the pending save, then stop the threads."""
        self._impl.close()

    def __enter__(self) -> AsyncCheckpointer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
