"""wrap_future and on_complete on ``concurrent.futures.Future``.

Behaves as upstream's ``torch.distributed.checkpoint._experimental.utils.
wrap_future`` does, without its failures: a source holding a BaseException
completes the masked future instead of raising into the completer, chains of
any length complete, and a masked future cancelled by its holder stays
cancelled quietly.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import CancelledError, Future, InvalidStateError
from functools import partial
from typing import Any, Callable

logger = logging.getLogger("torch_ext")

# concurrent.futures runs done-callbacks inline, so completing the head of a
# chain recurses once per link (upstream hits RecursionError, logged and
# dropped, after about 330). Ours nest inline up to this depth, as upstream's
# do, so a future completed from inside a callback is done when that call
# returns; deeper ones are queued per thread and run by the callback at the
# limit, depth first as they would have run.
_MAX_INLINE_DEPTH = 16


class _ThreadState(threading.local):
    depth = 0
    pending: list | None = None


_thread = _ThreadState()


def _call_logged(fn: Callable[[Any, Future], None], arg: Any, future: Future) -> None:
    try:
        fn(arg, future)
    except BaseException:  # a callback must never break the thread completing a future
        logger.exception("torch_ext.on_complete: callback %r raised", arg)


def _run_flattened(fn: Callable[[Any, Future], None], arg: Any, future: Future) -> None:
    state = _thread
    if state.depth < _MAX_INLINE_DEPTH:
        state.depth += 1
        try:
            _call_logged(fn, arg, future)
        finally:
            state.depth -= 1
        return
    pending = state.pending
    if pending is not None:
        pending.append((fn, arg, future))
        return
    pending = state.pending = []
    try:
        _call_logged(fn, arg, future)
        first_new = 0
        while True:
            pending[first_new:] = pending[first_new:][::-1]
            if not pending:
                break
            fn, arg, future = pending.pop()
            first_new = len(pending)
            _call_logged(fn, arg, future)
    finally:
        state.pending = None


def _add_callback(future: Future, fn: Callable[[Any, Future], None], arg: Any) -> None:
    if _thread.depth >= _MAX_INLINE_DEPTH and future.done():
        # Run now even where its callback would be queued, so that what it
        # completes is complete when the caller gets it back. Elsewhere
        # add_done_callback runs it now, without this extra lock.
        _call_logged(fn, arg, future)
    else:
        future.add_done_callback(partial(_run_flattened, fn, arg))


def _call_user(callback: Callable[[Future], Any], future: Future) -> None:
    callback(future)


def on_complete(future: Future, callback: Callable[[Future], Any]) -> None:
    _add_callback(future, _call_user, callback)


def _forward_outcome(masked: Future, source: Future) -> None:
    try:
        error = source.exception()
    except CancelledError as cancelled:
        error = cancelled
    try:
        if error is None:
            masked.set_result(None)
        else:
            masked.set_exception(error)
    except InvalidStateError:
        pass  # its holder cancelled or completed it first: that stands


def wrap_future(original_result: Any) -> Future[None]:
    masked: Future[None] = Future()
    if isinstance(original_result, Future):
        _add_callback(original_result, _forward_outcome, masked)
    else:
        masked.set_result(None)
    return masked
