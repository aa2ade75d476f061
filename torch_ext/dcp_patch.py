"""``patch_dcp``: make upstream DCP use ``torch_ext.wrap_future``."""

from __future__ import annotations

import importlib
from types import ModuleType, TracebackType
from typing import Any, Callable

from torch_ext.future_utils import wrap_future

__all__ = ["patch_dcp"]

_DCP = "torch.distributed.checkpoint._experimental"
# checkpointer.py does `from .utils import wrap_future` and AsyncCheckpointer.save
# looks that global up on each call: patching it reaches checkpointers the
# program already has. The package and utils attributes serve later importers.
_MODULES = (f"{_DCP}.checkpointer", f"{_DCP}.utils", _DCP)


class _DcpPatch:
    """Undoes one ``patch_dcp()``, on ``restore()`` or on leaving a ``with``."""

    def __init__(self) -> None:
        modules = [importlib.import_module(name) for name in _MODULES]
        self._originals: list[tuple[ModuleType, Callable[..., Any]]] = [
            (module, module.wrap_future) for module in modules
        ]
        for module in modules:
            module.wrap_future = wrap_future

    def restore(self) -> None:
        """Put back what each module held before this patch. Idempotent."""
        originals, self._originals = self._originals, []
        for module, original in originals:
            module.wrap_future = original

    def __enter__(self) -> _DcpPatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.restore()


def patch_dcp() -> _DcpPatch:
    """Make ``torch.distributed.checkpoint._experimental`` use ``torch_ext.wrap_future``.

    Patches the name ``AsyncCheckpointer.save`` calls, so checkpointers that
    already exist use ours from their next ``save``, and the ``utils`` and
    package attributes. Works as a plain call (patched until ``restore()``)
    or as a context manager (restored on exit). Nested patches must be undone
    in reverse order.

    Example::

        >>> with torch_ext.patch_dcp():
        ...     stage_future, write_future = checkpointer.save(path, state_dict)
    """
    return _DcpPatch()
