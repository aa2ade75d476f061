"""The wrapped future does not keep its source's value alive: RSS comes back."""

import subprocess
import sys

GIB = 1 << 30

# In a fresh process, so that nothing else in it holds or caches memory.
STAGE_AND_DROP = """
import gc, torch, torch_ext

def rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

source = torch.futures.Future()
wrapped = torch_ext.wrap_future(source)
before = rss()
staged = torch.ones(1 << 28)  # 1 GiB of float32, every page written
source.set_result(staged)
del staged
staged_rss = rss()
del source
gc.collect()
print(before, staged_rss, rss(), wrapped.done() and wrapped.wait() is None)
"""


def test_dropping_the_source_returns_its_1_gib_value():
    run = subprocess.run(
        [sys.executable, "-c", STAGE_AND_DROP], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    before, staged, after, wrapped_done = run.stdout.split()
    before, staged, after = int(before), int(staged), int(after)
    print(f"RSS: {before / GIB:.2f} GiB before, {staged / GIB:.2f} GiB staged, {after / GIB:.2f} GiB after")
    assert wrapped_done == "True"
    assert staged - before > 0.95 * GIB  # the value was really resident
    assert after - before < 0.05 * GIB  # and all of it came back
