"""Failures of every kind from Python and TorchScript reach the wrapped future
with their type; what a callback raises is logged once; a wrapped future
completed by hand keeps that result."""

import asyncio
import concurrent.futures
import logging

import pytest
import torch

import bounded
import torch_ext


class CustomError(Exception):
    pass


class CustomBaseException(BaseException):
    pass


EXCEPTIONS = [ValueError("value"), CustomError("custom"), OSError(28, "disk full")]
# torch.futures.Future.set_exception refuses these; set_result stores them as
# the value, which wrap_future reads as the failure it stands for.
BASE_EXCEPTIONS = [
    KeyboardInterrupt("interrupt"),
    SystemExit(3),
    GeneratorExit("generator"),
    asyncio.CancelledError("cancelled"),
    CustomBaseException("base"),
]


def name(error):
    return type(error).__name__


@pytest.mark.parametrize("fail_first", [False, True], ids=["pending", "failed"])
@pytest.mark.parametrize(
    "error, fail",
    [(e, "set_exception") for e in EXCEPTIONS] + [(e, "set_result") for e in BASE_EXCEPTIONS],
    ids=lambda x: name(x) if isinstance(x, BaseException) else x,
)
def test_python_error_is_raised_as_that_very_object_through_a_chain(error, fail, fail_first):
    source = torch.futures.Future()
    if fail_first:
        getattr(source, fail)(error)
    wrapped = torch_ext.wrap_future(torch_ext.wrap_future(source))
    if not fail_first:
        getattr(source, fail)(error)
    with pytest.raises(type(error)) as raised:
        bounded.wait(wrapped, "the wrap of a wrap")
    assert raised.value is error


def test_a_python_failure_is_raised_by_every_wait_on_every_wrap():
    # A pybind11::error_already_set may be restored only once: holding one
    # terminated the process on the second wait.
    source = torch.futures.Future()
    first, second = torch_ext.wrap_future(source), torch_ext.wrap_future(source)
    error = ValueError("raised again")
    source.set_exception(error)
    for wrapped in (first, first, second, torch_ext.wrap_future(first)):
        with pytest.raises(ValueError) as raised:
            bounded.wait(wrapped, "a wrap")
        assert raised.value is error


@pytest.mark.parametrize("error", EXCEPTIONS + BASE_EXCEPTIONS, ids=name)
def test_concurrent_source_with_any_exception_completes_the_masked_future(error):
    source = concurrent.futures.Future()
    masked = torch_ext.wrap_future(torch_ext.wrap_future(source))
    source.set_exception(error)  # raises nothing into the completer
    assert bounded.completed(masked, "the masked future").exception() is error


def raises_in_then(_):
    raise ValueError("raised in then")


def fail_in_script(x: torch.Tensor) -> torch.Tensor:
    raise ValueError("raised in TorchScript")


@torch.jit.script
def fork_failing(x: torch.Tensor) -> torch.jit.Future[torch.Tensor]:
    return torch.jit.fork(fail_in_script, x)


def exception_of(future):
    bounded.completed(future, "a failing future")
    with pytest.raises(BaseException) as raised:
        future.wait()
    return raised.value


def test_error_raised_in_torchscript_keeps_its_type():
    source = fork_failing(torch.ones(1))
    expected, got = exception_of(source), exception_of(torch_ext.wrap_future(source))
    assert type(got) is type(expected)
    assert "raised in TorchScript" in str(got)


def test_failed_then_source_keeps_its_type():
    parent = torch.futures.Future()
    source = parent.then(raises_in_then)
    wrapped = torch_ext.wrap_future(source)
    parent.set_result(1)
    expected, got = exception_of(source), exception_of(wrapped)
    assert type(got) is type(expected)
    assert "raised in then" in str(got)


@pytest.mark.parametrize("error", EXCEPTIONS + BASE_EXCEPTIONS, ids=name)
def test_each_raising_callback_is_logged_once_and_stops_nothing(error, caplog):
    source = torch.futures.Future()
    wrapped = torch_ext.wrap_future(source)

    def raises(_):
        raise error

    later = []
    torch_ext.on_complete(wrapped, raises)
    torch_ext.on_complete(wrapped, later.append)
    with caplog.at_level(logging.ERROR, logger="torch_ext"):
        source.set_result(None)
    assert later == [wrapped]
    assert len([r for r in caplog.records if r.exc_info and r.exc_info[1] is error]) == 1


def test_wrapped_future_completed_by_hand_first_keeps_that_result():
    source = torch.futures.Future()
    wrapped = torch_ext.wrap_future(source)
    wrapped.set_result("cancelled by its holder")
    source.set_exception(ValueError("source failed"))  # raises nothing
    assert bounded.wait(wrapped, "the wrap") == "cancelled by its holder"
