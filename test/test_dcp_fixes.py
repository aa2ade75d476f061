"""Where upstream's DCP wrap_future goes wrong and torch_ext.wrap_future does not.

Each test runs the same scenario on both, shows upstream's failure and asserts
ours behaves. Nothing waits on a future that may never complete: a scenario
returns only once the completing thread is done.
"""

import asyncio
import logging
import sys
import threading
from concurrent.futures import Future

import pytest
from torch.distributed.checkpoint._experimental import CheckpointStagerConfig, DefaultStager
from torch.distributed.checkpoint._experimental.utils import wrap_future as upstream_wrap_future

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
    def scenario(wrap):
        source = Future()
        masked = wrap(source)
        into_completer = raised_by(lambda: source.set_exception(error))
        return into_completer, masked.done() and masked.exception() is error

    assert scenario(upstream_wrap_future) == (error, False)
    assert scenario(torch_ext.wrap_future) == (None, True)


@pytest.mark.parametrize("error", BASE_EXCEPTIONS, ids=lambda e: type(e).__name__)
def test_base_exception_source_done_before_the_wrap(error):
    def scenario(wrap):
        source = Future()
        source.set_exception(error)
        masked = None

        def call():
            nonlocal masked
            masked = wrap(source)

        return raised_by(call), masked is not None and masked.exception() is error

    assert scenario(upstream_wrap_future) == (error, False)
    assert scenario(torch_ext.wrap_future) == (None, True)


def test_default_stager_cancelled_staging_task_completes_the_masked_future():
    # A ThreadPoolExecutor stores whatever its task raises, even
    # asyncio.CancelledError; upstream's callback then raises it out of the
    # worker's set_exception, which kills the worker thread.
    cancelled = asyncio.CancelledError("staging task cancelled")

    class CancelsItsCopy:
        def __init__(self):
            self.release = threading.Event()

        def __deepcopy__(self, memo):
            assert self.release.wait(60), "the test never released the staging"
            raise cancelled

    def scenario(wrap):
        stager = DefaultStager(
            CheckpointStagerConfig(
                use_pinned_memory=False,
                use_shared_memory=False,
                use_async_staging=True,
                use_non_blocking_copy=False,
            )
        )
        entry = CancelsItsCopy()
        masked = wrap(stager.stage({"entry": entry}))
        entry.release.set()
        stager.close()  # joins the staging thread: the callbacks have run
        return masked.done() and masked.exception() is cancelled

    assert scenario(upstream_wrap_future) is False
    assert scenario(torch_ext.wrap_future) is True


def test_chain_of_20000_completes_on_the_completing_thread(caplog):
    assert sys.getrecursionlimit() == 1000

    def scenario(wrap):
        source = Future()
        end = source
        for _ in range(20_000):
            end = wrap(end)
        threads = []
        end.add_done_callback(lambda _: threads.append(threading.get_ident()))
        completer = threading.Thread(target=source.set_result, args=(1,))
        completer.start()
        completer.join()
        return end.done(), threads == [completer.ident]

    with caplog.at_level(logging.ERROR):
        assert scenario(upstream_wrap_future) == (False, False)
    assert "RecursionError" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        assert scenario(torch_ext.wrap_future) == (True, True)
    assert caplog.records == []


def test_masked_future_cancelled_by_its_holder_stays_cancelled_quietly(caplog, capfd):
    def scenario(wrap):
        source = Future()
        masked = wrap(source)
        assert masked.cancel()
        caplog.clear()
        capfd.readouterr()
        with caplog.at_level(logging.DEBUG):
            source.set_result(1)
        return masked.cancelled(), [record.getMessage() for record in caplog.records], capfd.readouterr().err

    cancelled, logged, stderr = scenario(upstream_wrap_future)
    assert cancelled and "InvalidStateError" in caplog.text and logged
    assert scenario(torch_ext.wrap_future) == (True, [], "")
