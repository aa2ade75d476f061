"""``CheckpointManager``: the C++ manager of a training run's checkpoints."""

from __future__ import annotations

import os
from typing import Any

import torch

from torch_ext import _C

__all__ = ["CheckpointManager"]


class CheckpointManager:
    """Which steps of a training run exist on disk: save, list, load, retention.

    Like orbax's ``CheckpointManager``: each step is a folder
    ``<root>/step_<step>/`` holding every rank's ``checkpoint_<rank>.pt`` (the
    layout and format of upstream DCP's ``CheckpointWriter``, which
    ``torch.load`` reads) and, written last by rank 0 once every rank's file
    is durable, a commit file. Only committed steps are listed, loaded or
    kept, so a crash at any point leaves either the whole step or none. On
    construction rank 0 removes what a crash left (uncommitted step folders,
    temporary files); the other ranks wait for it.

    Options (keywords; their defaults and bounds are C++'s
    ``CheckpointManagerOptions``): ``max_to_keep`` (None: keep every step),
    ``keep_every_n_steps`` (multiples of it are never deleted), ``rank``,
    ``world_size``, ``store`` (the job's ``torch.distributed.Store``, required
    with several ranks, e.g.
    ``torch.distributed.distributed_c10d._get_default_store()``),
    ``barrier_timeout_secs``, and the save options it shares with
    ``AsyncCheckpointer``: ``staging_threads``, ``max_staging_bytes`` and
    ``writer_nice``.

    Example::

        >>> manager = torch_ext.CheckpointManager("ckpt", max_to_keep=2)
        >>> if manager.latest_step() is not None:
        ...     state = manager.load()          # resume
        >>> stage_future, commit_future = manager.save(step, state_dict)
        >>> stage_future.wait()   # the tensors may change from here on
        >>> commit_future.wait()  # committed, on every rank
    """

    def __init__(self, root: str | os.PathLike, **options: Any) -> None:
        self._impl = _C._CheckpointManager(os.fspath(root), **options)

    @property
    def root(self) -> str:
        return self._impl.root

    def save(self, step: int, state_dict: dict[str, Any]) -> tuple[torch._C.Future, torch._C.Future]:
        """Start saving this rank's ``state_dict`` as ``step``; return ``(stage_future, commit_future)``.

        Waits first for the previous save to finish (its errors stay in its
        futures), and raises if ``step`` is already committed. Every rank calls
        it with the same step. ``stage_future`` completes once the tensors are
        copied; ``commit_future`` once the step is committed on every rank, or
        fails on every rank with an error naming the step, its folder and the
        rank that failed. A ``state_dict`` that cannot be saved raises
        ``TypeError`` here, after telling the other ranks.
        """
        return self._impl.save(step, state_dict)

    def all_steps(self) -> list[int]:
        """The committed steps, ascending."""
        return self._impl.all_steps()

    def latest_step(self) -> int | None:
        """The newest committed step, or None."""
        return self._impl.latest_step()

    def load(self, step: int | None = None, **options: Any) -> dict[str, Any]:
        """This rank's state dict of the committed ``step`` (default: the latest).

        Read as :func:`torch_ext.load` reads a file, with its options:
        ``verify`` checks CRC32s, ``keys`` selects entries by key path.
        """
        return self._impl.load(step, **options)

    def step_path(self, step: int) -> str:
        """``<root>/step_<step>``."""
        return self._impl.step_path(step)

    def wait_until_finished(self) -> None:
        """Wait until the pending save, its commit and its retention are over."""
        self._impl.wait_until_finished()

    def close(self) -> None:
        """Wait until finished, then stop the manager's threads."""
        self._impl.close()

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
