"""Differential suite: torch_ext.wrap_future against upstream's DCP wrap_future.

Each case runs the same scenario on upstream's implementation and on ours, in
this process, and asserts both observe the same thing and that it is what
upstream's docstring promises.
"""

import asyncio
import contextlib
import threading
from concurrent.futures import CancelledError, Future

import pytest
import torch
from torch.distributed.checkpoint._experimental import checkpointer as dcp_checkpointer
from torch.distributed.checkpoint._experimental import (
    CheckpointerConfig,
    CheckpointStagerConfig,
    DefaultStager,
    make_async_checkpointer,
)
from torch.distributed.checkpoint._experimental.utils import wrap_future as upstream_wrap_future

import bounded
import torch_ext

TIMEOUT_S = 60
CPU_STAGING = CheckpointStagerConfig(
    use_pinned_memory=False,
    use_shared_memory=False,
    use_async_staging=True,
    use_non_blocking_copy=False,
)


def same(scenario):
    """What ``scenario(wrap)`` observes, asserted equal for upstream and ours."""
    upstream = scenario(upstream_wrap_future)
    ours = scenario(torch_ext.wrap_future)
    assert ours == upstream
    return ours


def state_of(future):
    if not future.done():
        return "pending"
    if future.cancelled():
        return "cancelled"
    error = future.exception()
    if error is None:
        return ("result", future.result())
    if isinstance(error, CancelledError):
        return ("raises", CancelledError)  # a new instance on each result() call
    return ("raises", error)


CANCEL = object()


def settle(source, outcome):
    if outcome is CANCEL:
        assert source.cancel()
    elif isinstance(outcome, BaseException):
        source.set_exception(outcome)
    else:
        source.set_result(outcome)


class Gate:
    """A state-dict entry whose deep copy, so the staging, waits for open()."""

    def __init__(self, error=None):
        self.opened = threading.Event()
        self.error = error
        self.copied_on = None

    def open(self):
        self.opened.set()

    def __deepcopy__(self, memo):
        assert self.opened.wait(TIMEOUT_S), "the test never opened the gate"
        self.copied_on = threading.get_ident()
        if self.error is not None:
            raise self.error
        return "copied"


def run_on_new_thread(fn):
    thread = threading.Thread(target=fn)
    thread.start()
    bounded.join(thread, "the completer")
    return thread.ident


@pytest.mark.parametrize("value", [None, 3, torch.ones(2), {"step": 1}, (Future,)], ids=repr)
def test_non_future_gives_a_future_done_with_none(value):
    def scenario(wrap):
        masked = wrap(value)
        return type(masked), state_of(masked)

    assert same(scenario) == (Future, ("result", None))


def test_asyncio_future_is_not_followed():
    loop = asyncio.new_event_loop()
    try:
        pending = loop.create_future()

        def scenario(wrap):
            masked = wrap(pending)
            return type(masked), state_of(masked)

        assert same(scenario) == (Future, ("result", None))
    finally:
        loop.close()


ERROR = OSError("disk full")
OUTCOMES = {"value": torch.ones(3), "error": ERROR, "cancel": CANCEL}
FINAL = {"value": ("result", None), "error": ("raises", ERROR), "cancel": ("raises", CancelledError)}


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("when", ["before_wrap", "after_wrap"])
def test_source_outcome_is_forwarded(outcome, when):
    def scenario(wrap):
        source = Future()
        if when == "before_wrap":
            settle(source, OUTCOMES[outcome])
        masked = wrap(source)
        at_wrap = state_of(masked)
        if when == "after_wrap":
            settle(source, OUTCOMES[outcome])
        return type(masked), at_wrap, state_of(masked), masked.cancelled()

    at_wrap = FINAL[outcome] if when == "before_wrap" else "pending"
    assert same(scenario) == (Future, at_wrap, FINAL[outcome], False)


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_done_callbacks_run_on_the_completing_thread(outcome):
    def scenario(wrap):
        source = Future()
        masked = wrap(source)
        threads = []
        masked.add_done_callback(lambda _: threads.append(threading.get_ident()))
        completer = run_on_new_thread(lambda: settle(source, OUTCOMES[outcome]))
        return threads == [completer], state_of(masked)

    assert same(scenario) == (True, FINAL[outcome])


def test_callbacks_run_in_registration_order():
    def scenario(wrap):
        source = Future()
        order = []
        wrap(source).add_done_callback(lambda _: order.append("first wrap"))
        source.add_done_callback(lambda _: order.append("source"))
        wrap(source).add_done_callback(lambda _: order.append("second wrap"))
        source.set_result(1)
        return order

    assert same(scenario) == ["first wrap", "source", "second wrap"]


def test_source_completed_inside_a_callback_is_forwarded_before_set_result_returns():
    def scenario(wrap):
        outer, inner = Future(), Future()
        masked_inner = wrap(inner)
        seen = []

        def complete_inner(_):
            inner.set_result(2)
            seen.append(state_of(masked_inner))

        wrap(outer).add_done_callback(complete_inner)
        outer.set_result(1)
        return seen

    assert same(scenario) == [("result", None)]


@pytest.mark.parametrize("outcome", ["value", "error"])
def test_chain_within_upstreams_reach_completes(outcome):
    def scenario(wrap):
        source = Future()
        end = source
        for _ in range(200):
            end = wrap(end)
        settle(source, OUTCOMES[outcome])
        return state_of(end)

    assert same(scenario) == FINAL[outcome]


def test_wrap_of_a_cancelled_masked_future_fails_with_cancelled_error():
    def scenario(wrap):
        masked = wrap(Future())
        assert masked.cancel()
        return state_of(wrap(masked))

    assert same(scenario) == ("raises", CancelledError)


class TestDefaultStager:
    @pytest.fixture
    def stager(self):
        stager = DefaultStager(CPU_STAGING)
        yield stager
        stager.close()

    def test_staged_copy_is_forwarded_as_none_on_the_staging_thread(self, stager):
        def scenario(wrap):
            gate = Gate()
            weights = torch.arange(6.0).reshape(2, 3)
            source = stager.stage({"weights": weights, "gate": gate})
            masked = wrap(source)
            threads = []
            masked.add_done_callback(lambda _: threads.append(threading.get_ident()))
            at_wrap = state_of(masked)
            gate.open()
            assert masked.exception(timeout=TIMEOUT_S) is None
            staged = source.result()
            return (
                at_wrap,
                state_of(masked),
                threads == [gate.copied_on] != [threading.get_ident()],
                torch.equal(staged["weights"], weights),
                staged["weights"] is not weights,
                staged["gate"],
            )

        assert same(scenario) == ("pending", ("result", None), True, True, True, "copied")

    def test_staging_error_is_forwarded_as_that_very_object(self, stager):
        def scenario(wrap):
            gate = Gate(error=MemoryError("no room to stage"))
            source = stager.stage({"gate": gate})
            masked = wrap(source)
            gate.open()
            error = masked.exception(timeout=TIMEOUT_S)
            return error is gate.error, error is source.exception()

        assert same(scenario) == (True, True)


def test_async_checkpointer_saves_the_same_with_ours_patched_in(tmp_path):
    checkpointer = make_async_checkpointer(config=CheckpointerConfig(staging_config=CPU_STAGING))
    try:
        saved = {}
        for name, patched in [("upstream", False), ("torch_ext", True)]:
            state_dict = {"weights": torch.randn(4, 4), "step": 7}
            path = str(tmp_path / name)
            with torch_ext.patch_dcp() if patched else contextlib.nullcontext():
                in_use = dcp_checkpointer.wrap_future
                stage_future, write_future = checkpointer.save(path, state_dict)
            assert isinstance(stage_future, Future)
            assert stage_future.result(timeout=TIMEOUT_S) is None
            assert write_future.result(timeout=TIMEOUT_S) is None
            saved[name] = (in_use, state_dict, checkpointer.load(path))
        for name, wrap in [("upstream", upstream_wrap_future), ("torch_ext", torch_ext.wrap_future)]:
            in_use, state_dict, loaded = saved[name]
            assert in_use is wrap
            assert loaded.keys() == state_dict.keys()
            assert torch.equal(loaded["weights"], state_dict["weights"])
            assert loaded["step"] == 7
    finally:
        checkpointer.close()
    assert dcp_checkpointer.wrap_future is upstream_wrap_future
