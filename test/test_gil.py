"""A callback on a wrapped future that waits on a future completed by another
thread must not deadlock on the GIL or on the futures' locks."""

import pytest

import bounded

# In a subprocess, so that a deadlock fails the test instead of hanging it.
WAIT_INSIDE_CALLBACK = """
import sys, threading, torch, torch_ext

source, other = torch.futures.Future(), torch.futures.Future()
wrapped = torch_ext.wrap_future(source)
# Completing `other` runs wrap_future's C++ callback, which takes the GIL to
# read the Python value, on the completer thread.
other_wrapped = torch_ext.wrap_future(other)
asked = threading.Event()

def complete_other():
    asked.wait()
    other.set_result(torch.ones(1))

seen = []

def wait_for_other(done):
    asked.set()
    seen.append(other.wait())

torch_ext.on_complete(wrapped, wait_for_other)
completer = threading.Thread(target=complete_other)
completer.start()
if sys.argv[1] == "main":
    source.set_result(torch.zeros(1))
else:
    source_completer = threading.Thread(target=source.set_result, args=(torch.zeros(1),))
    source_completer.start()
    source_completer.join()  # its set_result returns once the callback did
completer.join()
other_wrapped.wait()
print(len(seen), bool(torch.equal(seen[0], torch.ones(1))))
"""


@pytest.mark.parametrize("source_completed_on", ["main", "thread"])
def test_callback_waiting_on_another_thread_does_not_deadlock(source_completed_on):
    out = bounded.run_python(WAIT_INSIDE_CALLBACK, source_completed_on, what="a callback waiting on another future")
    assert out.split() == ["1", "True"]
