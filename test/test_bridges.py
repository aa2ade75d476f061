"""torch_ext.to_torch_future and torch_ext.to_concurrent_future."""

import asyncio
import concurrent.futures
import logging
import threading

import pytest
import torch

import bounded
import torch_ext

def complete_on_new_thread(complete):
    thread = threading.Thread(target=complete)
    thread.start()
    bounded.join(thread, "the completer")
    return thread.ident


def fail(x: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("staging exploded")


@torch.jit.script
def fork_failing(x: torch.Tensor) -> torch.jit.Future[torch.Tensor]:
    return torch.jit.fork(fail, x)


@torch.jit.script
def wait_for_staging(staged: torch.jit.Future[torch.Tensor]) -> None:
    torch.jit.wait(torch.ops.torch_ext.wrap_future(staged))


@torch.jit.script
def same_future(future: torch.jit.Future[int]) -> torch.jit.Future[int]:
    return future


class TestToTorchFuture:
    def test_value_is_forwarded_on_the_completing_thread(self):
        source = concurrent.futures.Future()
        bridged = torch_ext.to_torch_future(source)
        assert isinstance(bridged, torch.futures.Future) and not bridged.done()
        threads = []
        bridged.add_done_callback(lambda _: threads.append(threading.get_ident()))
        value = torch.ones(3)
        completer = complete_on_new_thread(lambda: source.set_result(value))
        assert threads == [completer]
        assert bounded.wait(bridged, "the bridged future") is value

    def test_already_completed_source_gives_a_done_future(self):
        source = concurrent.futures.Future()
        source.set_result(5)
        bridged = torch_ext.to_torch_future(source)
        assert bridged.done() and bridged.wait() == 5

    @pytest.mark.parametrize(
        "error",
        [OSError("disk full"), KeyboardInterrupt("interrupted"), asyncio.CancelledError("cancelled")],
        ids=lambda e: type(e).__name__,
    )
    def test_wait_raises_the_very_exception(self, error):
        source = concurrent.futures.Future()
        bridged = torch_ext.to_torch_future(source)
        assert complete_on_new_thread(lambda: source.set_exception(error))
        with pytest.raises(type(error)) as raised:
            bounded.wait(bridged, "the bridged future")
        assert raised.value is error

    def test_cancelled_source_raises_cancelled_error(self):
        source = concurrent.futures.Future()
        bridged = torch_ext.to_torch_future(source)
        assert source.cancel()
        with pytest.raises(concurrent.futures.CancelledError):
            bounded.wait(bridged, "the bridged future")

    def test_cpp_and_torchscript_read_a_failure_as_an_error(self):
        source = concurrent.futures.Future()
        bridged = torch_ext.to_torch_future(source)
        source.set_exception(ValueError("bad shard"))
        with pytest.raises(ValueError, match="^bad shard$"):
            bounded.wait(torch_ext.wrap_future(bridged), "the wrap")
        with pytest.raises(RuntimeError, match="ValueError: bad shard"):
            bounded.call(wait_for_staging, bridged, what="TorchScript's wait")

    def test_holder_completing_it_first_stands_and_the_completer_sees_nothing(self, caplog):
        source = concurrent.futures.Future()
        bridged = torch_ext.to_torch_future(source)
        bridged.set_result("mine")
        with caplog.at_level(logging.DEBUG):
            source.set_exception(OSError("late"))
        assert bounded.wait(bridged, "the bridged future") == "mine"
        assert caplog.records == []

    def test_torch_future_is_a_type_error(self):
        with pytest.raises(TypeError, match="expected a concurrent.futures.Future, got Future"):
            torch_ext.to_torch_future(torch.futures.Future())


class TestToConcurrentFuture:
    def test_value_is_forwarded_on_the_completing_thread(self):
        source = torch.futures.Future()
        bridged = torch_ext.to_concurrent_future(source)
        assert isinstance(bridged, concurrent.futures.Future) and not bridged.done()
        threads = []
        bridged.add_done_callback(lambda _: threads.append(threading.get_ident()))
        value = torch.ones(3)
        completer = complete_on_new_thread(lambda: source.set_result(value))
        assert threads == [completer]
        assert bounded.wait(bridged, "the bridged future") is value

    def test_already_completed_source_gives_a_done_future(self):
        source = torch.futures.Future()
        source.set_result(5)
        bridged = torch_ext.to_concurrent_future(source)
        assert bridged.done() and bridged.result() == 5

    def test_python_set_exception_is_raised_as_that_very_exception(self):
        source = torch.futures.Future()
        bridged = torch_ext.to_concurrent_future(source)
        error = OSError("disk full")
        source.set_exception(error)
        assert bounded.completed(bridged, "the bridged future").exception() is error

    def test_exception_held_by_a_wrapper_made_in_torchscript_is_a_failure(self):
        source = torch.futures.Future()
        rewrapped = same_future(source)  # a new Python wrapper, without set_exception's hook
        error = OSError("disk full")
        source.set_exception(error)
        assert bounded.wait(rewrapped, "the rewrapped future") is error
        assert bounded.completed(torch_ext.to_concurrent_future(rewrapped), "the bridged future").exception() is error

    def test_error_set_in_cpp_is_raised(self):
        source = torch.futures.Future()
        failed_in_cpp = torch.ops.torch_ext.wrap_future(source)
        error = OSError("disk full")
        source.set_exception(error)
        bridged = torch_ext.to_concurrent_future(failed_in_cpp)
        assert bounded.completed(bridged, "the bridged future").exception() is error

    def test_torchscript_error_is_raised_with_its_message(self):
        bridged = torch_ext.to_concurrent_future(fork_failing(torch.ones(1)))
        error = bounded.completed(bridged, "the bridged fork").exception()
        assert isinstance(error, RuntimeError)
        assert "staging exploded" in str(error)

    def test_holder_cancelling_it_first_stands_quietly(self, caplog, capfd):
        source = torch.futures.Future()
        bridged = torch_ext.to_concurrent_future(source)
        assert bridged.cancel()
        with caplog.at_level(logging.DEBUG):
            source.set_result(1)
        assert bridged.cancelled()
        assert caplog.records == []
        assert capfd.readouterr().err == ""

    def test_concurrent_future_is_a_type_error(self):
        with pytest.raises(TypeError, match="expected a torch.futures.Future, got Future"):
            torch_ext.to_concurrent_future(concurrent.futures.Future())


@pytest.mark.parametrize("outcome", [7, OSError("disk full")], ids=["value", "error"])
def test_round_trip_keeps_the_outcome(outcome):
    source = concurrent.futures.Future()
    back = torch_ext.to_concurrent_future(torch_ext.to_torch_future(source))
    if isinstance(outcome, BaseException):
        source.set_exception(outcome)
        assert bounded.completed(back, "the round trip").exception() is outcome
    else:
        source.set_result(outcome)
        assert bounded.wait(back, "the round trip") == outcome
