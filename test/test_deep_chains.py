"""Chains of torch futures linked from Python complete, and are dropped, in
bounded stack, on the thread that completes their head."""

import threading
import time

import pytest
import torch

import bounded
import torch_ext

WRAP_LINKS = 1_000_000
# Python callbacks cost microseconds each; this is 100 times the depth at which
# Python's recursion limit breaks a chain of nested done-callbacks.
ON_COMPLETE_LINKS = 100_000
# A bounded depth fits easily; one frame per link would need hundreds of MiB.
SMALL_STACK = 512 * 1024


def wrap_future_chain(head):
    tail = head
    for _ in range(WRAP_LINKS):
        tail = torch_ext.wrap_future(tail)
    return tail


def forward(next_future, done):
    try:
        done.wait()
    except BaseException as error:
        next_future.set_exception(error)
    else:
        next_future.set_result(None)


def on_complete_chain(head):
    tail = head
    for _ in range(ON_COMPLETE_LINKS):
        next_future = torch.futures.Future()
        torch_ext.on_complete(tail, lambda done, next_future=next_future: forward(next_future, done))
        tail = next_future
    return tail


def run_on_small_stack(fn):
    previous = threading.stack_size(SMALL_STACK)
    try:
        thread = threading.Thread(target=fn)
        thread.start()
    finally:
        threading.stack_size(previous)
    bounded.join(thread, "the thread on a small stack")


def complete_on_small_stack(head, tail, complete, what):
    seen = {}
    torch_ext.on_complete(tail, lambda _: seen.update(tail_thread=threading.get_ident()))

    def run():
        seen["completer"] = threading.get_ident()
        wall, cpu = time.perf_counter(), time.thread_time()
        complete(head)
        seen["cpu"], seen["wall"] = time.thread_time() - cpu, time.perf_counter() - wall
        seen["tail_done"] = tail.done()

    run_on_small_stack(run)
    # CPU time of the completing thread as well: wall time varies on a busy box.
    print(f"{what}: completing the head took {seen['wall'] * 1e3:.0f} ms wall, {seen['cpu'] * 1e3:.0f} ms CPU")
    return seen


def set_value(head):
    head.set_result(torch.ones(1))


def set_error(head):
    head.set_exception(ValueError("head failed"))


@pytest.mark.parametrize("complete", [set_value, set_error])
@pytest.mark.parametrize("build", [wrap_future_chain, on_complete_chain])
def test_chain_completes_in_bounded_stack_on_the_completing_thread(build, complete):
    head = torch.futures.Future()
    tail = build(head)
    seen = complete_on_small_stack(head, tail, complete, f"{build.__name__} ({complete.__name__})")
    assert seen["tail_done"]
    assert seen["tail_thread"] == seen["completer"]
    if complete is set_value:
        assert bounded.wait(tail, "the chain's tail") is None
    else:
        with pytest.raises(ValueError, match="head failed"):
            bounded.wait(tail, "the chain's tail")


def test_never_completed_wrap_future_chain_is_dropped_in_bounded_stack():
    holder = [torch.futures.Future()]
    wrap_future_chain(holder[0])  # the chain owns its tail
    run_on_small_stack(holder.clear)  # destroys the whole chain
    assert holder == []
