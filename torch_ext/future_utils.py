"""``wrap_future`` and ``on_complete`` for torch and concurrent futures."""

from __future__ import annotations

import concurrent.futures
from typing import Any, Callable, TypeVar, Union, overload

import torch

from torch_ext import _concurrent
from torch_ext._C import wrap_future as _wrap_torch_future

_TorchFuture = torch._C.Future

__all__ = ["on_complete", "wrap_future"]

AnyFuture = TypeVar("AnyFuture", torch.futures.Future, concurrent.futures.Future)


@overload
def wrap_future(original_result: torch.futures.Future[Any]) -> torch.futures.Future[None]: ...
@overload
def wrap_future(original_result: Any) -> concurrent.futures.Future[None]: ...


def wrap_future(
    original_result: Any,
) -> Union[torch.futures.Future[None], concurrent.futures.Future[None]]:
    """Return a future that completes with None when ``original_result`` does.

    A torch future goes to the C++ ``torch_ext::wrap_future`` (what the op
    ``torch.ops.torch_ext.wrap_future`` runs, called without the dispatcher):
    the result is a torch future with the source's devices, completed on the
    thread that completes the source, with None or with the source's exception
    (also one set from Python with ``set_exception``). It keeps no reference
    to the source or its value.

    Anything else behaves as upstream's
    ``torch.distributed.checkpoint._experimental.utils.wrap_future``: a
    ``concurrent.futures.Future`` source gives a ``concurrent.futures.Future``
    that follows it; any other value gives one already completed with None.

    Example::

        >>> source = torch.futures.Future()
        >>> done = torch_ext.wrap_future(source)
        >>> source.set_result(torch.ones(3))
        >>> done.wait() is None
        True
    """
    if isinstance(original_result, _TorchFuture):
        return _wrap_torch_future(original_result)
    return _concurrent.wrap_future(original_result)


def on_complete(future: AnyFuture, callback: Callable[[AnyFuture], Any]) -> None:
    """Run ``callback(future)`` once ``future`` completes, safely.

    The callback runs exactly once, on the thread that completes the future,
    or right away if it is already complete. Whatever it raises, even a
    BaseException, is logged on the ``torch_ext`` logger and never reaches the
    code completing the future, nor stops its other callbacks.

    Example::

        >>> source = torch.futures.Future()
        >>> torch_ext.on_complete(source, lambda f: print("done:", f.value()))
        >>> source.set_result(7)
        done: 7
    """
    if not callable(callback):
        raise TypeError(
            "torch_ext.on_complete expected a callable taking the future, "
            f"got {type(callback).__name__}"
        )
    if isinstance(future, (torch._C.Future, concurrent.futures.Future)):
        # Both run done-callbacks inline: chains need the same trampoline.
        _concurrent.on_complete(future, callback)
    else:
        raise TypeError(
            "torch_ext.on_complete expected a torch.futures.Future or a "
            f"concurrent.futures.Future, got {type(future).__name__}"
        )
