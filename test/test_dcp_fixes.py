"""Where upstream's DCP wrap_future goes wrong, torch_ext.wrap_future does not:
the cases of README's "Where ours differs from upstream", asserted of ours.

What upstream's wrap_future (torch.distributed.checkpoint._experimental.utils)
did in each case, measured on torch 2.13.0, is the note at each test, not an
assertion: upstream fixing it must not turn these tests red.

Nothing waits on a future that may never complete: a scenario returns only
once the completing thread is done.
"""

import asyncio
import logging
import sys
import threading
from concurrent.futures import Future

import pytest
from torch.distributed.checkpoint._experimental import CheckpointStagerConfig, DefaultStager

import bounded
import torch_ext

BASE_EXCEPTIONS = [
    KeyboardInterrupt("interrupted while staging"),
    SystemExit(3),
    GeneratorExit("closed"),
    asyncio.CancelledError("staging task cancelled"),
]


def raised_by(fn):
    try:
        fn()
    except BaseException as error:
        return error
    return None


@pytest.mark.parametrize("error", BASE_EXCEPTIONS, ids=lambda e: type(e).__name__)
def test_base_exception_source_completes_the_masked_future(error):
    # Upstream: its callback catches Exception only, so the error is raised
    # into the completer's set_exception and the masked future never completes.
    source = Future()
    masked = torch_ext.wrap_future(source)
    assert raised_by(lambda: source.set_exception(error)) is None
    assert masked.done() and masked.exception() is error


@pytest.mark.parametrize("error", BASE_EXCEPTIONS, ids=lambda e: type(e).__name__)
def test_base_exception_source_done_before_the_wrap(error):
    # Upstream: the callback runs inside wrap_future, which raises the error
    # and returns no future.
    source = Future()
    source.set_exception(error)
    masked = None

    def wrap():
        nonlocal masked
        masked = torch_ext.wrap_future(source)

    assert raised_by(wrap) is None
    assert masked.done() and masked.exception() is error


def test_default_stager_cancelled_staging_task_completes_the_masked_future():
    # A ThreadPoolExecutor stores whatever its task raises, even
    # asyncio.CancelledError. Upstream: its callback raises that out of the
    # worker's set_exception, which kills the worker thread; the masked future
    # never completes.
    cancelled = asyncio.CancelledError("staging task cancelled")

    class CancelsItsCopy:
        def __init__(self):
            self.release = threading.Event()

        def __deepcopy__(self, memo):
            assert self.release.wait(bounded.TIMEOUT_S), "the test never released the staging"
            raise cancelled

    stager = DefaultStager(
        CheckpointStagerConfig(
            use_pinned_memory=False,
            use_shared_memory=False,
            use_async_staging=True,
            use_non_blocking_copy=False,
        )
    )
    entry = CancelsItsCopy()
    masked = torch_ext.wrap_future(stager.stage({"entry": entry}))
    entry.release.set()
    stager.close()  # joins the staging thread: the callbacks have run
    assert masked.done() and masked.exception() is cancelled


def test_chain_of_20000_completes_on_the_completing_thread(caplog):
    # Upstream: each link completes the next from its callback, one Python
    # frame deeper; past about 330 links a RecursionError is logged and
    # dropped, and the end of the chain stays pending.
    assert sys.getrecursionlimit() == 1000
    source = Future()
    end = source
    for _ in range(20_000):
        end = torch_ext.wrap_future(end)
    threads = []
    end.add_done_callback(lambda _: threads.append(threading.get_ident()))
    completer = threading.Thread(target=source.set_result, args=(1,))
    with caplog.at_level(logging.DEBUG):
        completer.start()
        bounded.join(completer, "the completer")
    assert end.done() and end.result() is None
    assert threads == [completer.ident]
    assert caplog.records == []


def test_masked_future_cancelled_by_its_holder_stays_cancelled_quietly(caplog, capfd):
    # Upstream: completing the source logs an InvalidStateError traceback
    # (set_result on a cancelled future).
    source = Future()
    masked = torch_ext.wrap_future(source)
    assert masked.cancel()
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG):
        source.set_result(1)
    assert masked.cancelled()
    assert caplog.records == []
    assert capfd.readouterr().err == ""
