"""Bridges between ``concurrent.futures.Future`` and ``torch.futures.Future``.

DCP's Python API hands out concurrent futures; C++ and TorchScript code takes
torch futures. Each bridge forwards the outcome on the thread that completes
the source, during that completion, and never raises into that thread. If
the holder of the bridged future completes or cancels it first, that stands.
"""

from __future__ import annotations

import concurrent.futures
from functools import partial
from typing import Any, TypeVar

import torch

from torch_ext.future_utils import on_complete

__all__ = ["to_concurrent_future", "to_torch_future"]

T = TypeVar("T")


def _raise_if_exception(value: Any) -> None:
    if isinstance(value, BaseException):
        raise value


def _fail(future: torch.futures.Future, error: BaseException) -> None:
    # What torch.futures.Future.set_exception does, minus its assert that
    # rejects BaseExceptions (KeyboardInterrupt, asyncio.CancelledError...).
    # The hook is installed first so no callback sees the error as a value;
    # it raises only exceptions, in case the holder's own result wins.
    future._set_unwrap_func(_raise_if_exception)
    future.set_result(error)


def _forward_to_torch(bridged: torch.futures.Future, source: concurrent.futures.Future) -> None:
    if bridged.done():
        return  # its holder completed it first: that stands
    try:
        value = source.result()
    except BaseException as error:  # CancelledError for a cancelled source, too
        _fail(bridged, error)
    else:
        bridged.set_result(value)


def to_torch_future(future: concurrent.futures.Future[T]) -> torch.futures.Future[T]:
    """Return a torch future that completes as ``future`` does.

    ``wait()`` on it returns the source's result, or raises the source's very
    exception (``CancelledError`` for a cancelled source), BaseExceptions
    included. As for any future failed from Python, the c10 future holds the
    exception object as its value; ``torch_ext.wrap_future`` and
    ``to_concurrent_future`` read it back as a failure.

    Example::

        >>> staged = torch_ext.to_torch_future(stager.stage(state_dict))
        >>> torch_ext.wrap_future(staged).wait()   # None once staging is done
    """
    if not isinstance(future, concurrent.futures.Future):
        raise TypeError(
            "torch_ext.to_torch_future expected a concurrent.futures.Future, "
            f"got {type(future).__name__}"
        )
    bridged: torch.futures.Future[T] = torch.futures.Future()
    on_complete(future, partial(_forward_to_torch, bridged))
    return bridged


def _forward_to_concurrent(bridged: concurrent.futures.Future, source: torch.futures.Future) -> None:
    try:
        value: Any = source.value()
    except BaseException as error:  # a C++ or TorchScript error, or one set from Python
        value = error
    try:
        # A Python exception held as a value is how set_exception stores a
        # failure; wrappers created in C++ lose the hook that raises it.
        if isinstance(value, BaseException):
            bridged.set_exception(value)
        else:
            bridged.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass  # its holder cancelled or completed it first: that stands


def to_concurrent_future(future: torch.futures.Future[T]) -> concurrent.futures.Future[T]:
    """Return a ``concurrent.futures.Future`` that completes as ``future`` does.

    Its ``result()`` is the source's value, or raises the source's error: the
    very exception for a future failed from Python with ``set_exception``, a
    ``RuntimeError`` with the C++ message for one failed in C++ or TorchScript.

    Example::

        >>> done = torch_ext.to_concurrent_future(torch.jit.fork(stage, x))
        >>> done.result()
    """
    if not isinstance(future, torch._C.Future):
        raise TypeError(
            "torch_ext.to_concurrent_future expected a torch.futures.Future, "
            f"got {type(future).__name__}"
        )
    bridged: concurrent.futures.Future[T] = concurrent.futures.Future()
    on_complete(future, partial(_forward_to_concurrent, bridged))
    return bridged
