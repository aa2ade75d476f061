"""Waits with a deadline: a test that would hang on a deadlock or a lost
completion fails instead, naming what it waited for."""

import concurrent.futures
import subprocess
import sys
import threading

import pytest

TIMEOUT_S = 120


def completed(future, what, timeout=TIMEOUT_S):
    """`future` (a torch future or a concurrent one) once it is done."""
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    if not done.wait(timeout):
        pytest.fail(f"{what} did not complete within {timeout} s")
    return future


def wait(future, what, timeout=TIMEOUT_S):
    """What `future` completed with, or its exception raised."""
    completed(future, what, timeout)
    return future.result() if isinstance(future, concurrent.futures.Future) else future.wait()


def join(thread, what, timeout=TIMEOUT_S):
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{what} did not finish within {timeout} s")


def call(fn, *args, what, timeout=TIMEOUT_S):
    """fn(*args) on a thread of its own: what it returns, or its exception
    raised. For calls that wait where no deadline can be given (TorchScript's
    torch.jit.wait) and release the GIL meanwhile."""
    outcome = concurrent.futures.Future()

    def run():
        try:
            outcome.set_result(fn(*args))
        except BaseException as error:
            outcome.set_exception(error)

    threading.Thread(target=run, daemon=True).start()
    return wait(outcome, what, timeout)


def run_python(script, *args, what, timeout=TIMEOUT_S):
    """The stdout of `script` run by a new interpreter: a deadlock that holds
    the GIL stops every thread of its process, this test's included."""
    try:
        run = subprocess.run(
            [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} did not finish within {timeout} s: a deadlock")
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout
