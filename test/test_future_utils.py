"""torch_ext.wrap_future and torch_ext.on_complete from Python."""

import concurrent.futures
import gc
import logging
import threading
import weakref

import pytest
import torch

import bounded
import torch_ext


def complete_on_new_thread(complete):
    ident = {}

    def run():
        ident["completer"] = threading.get_ident()
        complete()

    thread = threading.Thread(target=run)
    thread.start()
    bounded.join(thread, "the completer")
    return ident["completer"]


class TestWrapTorchFuture:
    def test_completes_with_none_after_the_source(self):
        source = torch.futures.Future()
        wrapped = torch_ext.wrap_future(source)
        assert isinstance(wrapped, torch._C.Future)
        assert not wrapped.done()
        source.set_result(torch.ones(3))
        assert wrapped.done()
        assert wrapped.wait() is None

    def test_python_set_exception_is_raised_as_that_very_exception(self):
        source = torch.futures.Future()
        wrapped = torch_ext.wrap_future(source)
        error = ValueError("x")
        source.set_exception(error)
        with pytest.raises(ValueError, match="^x$") as raised:
            bounded.wait(wrapped, "the wrap")
        assert raised.value is error

    def test_already_completed_source_gives_a_done_future(self):
        source = torch.futures.Future()
        source.set_result(1)
        assert torch_ext.wrap_future(source).done()

    def test_completed_on_the_completing_thread(self):
        source = torch.futures.Future()
        wrapped = torch_ext.wrap_future(source)
        seen = {}
        torch_ext.on_complete(wrapped, lambda f: seen.update(thread=threading.get_ident(), done=f.done()))
        completer = complete_on_new_thread(lambda: source.set_result(torch.zeros(1)))
        assert seen == {"thread": completer, "done": True}
        assert completer != threading.get_ident()

    def test_keeps_no_reference_to_the_value(self):
        source = torch.futures.Future()
        wrapped = torch_ext.wrap_future(source)
        staged = torch.ones(1024)
        alive = weakref.ref(staged)
        source.set_result(staged)
        del staged, source
        gc.collect()
        assert alive() is None
        assert bounded.wait(wrapped, "the wrap") is None


class TestWrapOtherValues:
    @pytest.mark.parametrize("value", [None, 3, torch.ones(2), {"a": 1}])
    def test_non_future_gives_a_concurrent_future_done_with_none(self, value):
        masked = torch_ext.wrap_future(value)
        assert isinstance(masked, concurrent.futures.Future)
        assert masked.done() and masked.result() is None

    def test_concurrent_source_gives_a_concurrent_future_that_follows_it(self):
        source = concurrent.futures.Future()
        masked = torch_ext.wrap_future(source)
        assert isinstance(masked, concurrent.futures.Future) and not masked.done()
        error = OSError("disk full")
        source.set_exception(error)
        assert bounded.completed(masked, "the masked future").exception() is error


class TestOnComplete:
    @pytest.mark.parametrize("make", [torch.futures.Future, concurrent.futures.Future])
    def test_runs_once_on_completion_or_inline_when_done(self, make):
        future = make()
        calls = []
        torch_ext.on_complete(future, calls.append)
        assert calls == []
        future.set_result(5)
        assert calls == [future]
        torch_ext.on_complete(future, calls.append)
        assert calls == [future, future]

    @pytest.mark.parametrize("make", [torch.futures.Future, concurrent.futures.Future])
    @pytest.mark.parametrize("error", [RuntimeError("cb boom"), KeyboardInterrupt("cb boom")])
    def test_raising_callback_is_logged_and_stops_nothing(self, make, error, caplog):
        future = make()

        def raises(_):
            raise error

        later = []
        torch_ext.on_complete(future, raises)
        torch_ext.on_complete(future, later.append)
        with caplog.at_level(logging.ERROR, logger="torch_ext"):
            future.set_result(None)
        assert later == [future]
        assert "cb boom" in caplog.text

    @pytest.mark.parametrize("make", [torch.futures.Future, concurrent.futures.Future])
    def test_non_callable_is_a_type_error(self, make):
        with pytest.raises(TypeError, match="expected a callable.*got int"):
            torch_ext.on_complete(make(), 3)

    def test_non_future_is_a_type_error(self):
        with pytest.raises(TypeError, match="expected a torch.futures.Future.*got list"):
            torch_ext.on_complete([], print)
