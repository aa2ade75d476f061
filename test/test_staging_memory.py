"""Staging memory of torch_ext.AsyncCheckpointer, as the peak RSS of a fresh process.

Without a bound a save holds one copy of the state dict, reused by the next
save; with `max_staging_bytes` a larger state dict is staged and written in
waves within that budget, into the same file.
"""

import json
import subprocess
import sys

MIB = 1 << 20
STATE_MIB = 192
SLACK = 64 * MIB  # threads' stacks, the pickle, allocator slack

# In a fresh process, so that nothing else in it holds or caches memory.
# VmHWM is reset (clear_refs 5) after the baseline, so it is the peak of the
# saves alone.
SAVE_TWICE = """
import json, sys, torch, torch_ext

def status(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

options = json.loads(sys.argv[1])
folder = sys.argv[2]
# 24 tensors of 8 MiB, every page written.
state = {"model": {f"layer{i}": torch.full((2 << 20,), float(i)) for i in range(24)}, "step": 3}
with torch_ext.AsyncCheckpointer(**options) as checkpointer:
    checkpointer.save(folder + "/warm_up", {"x": torch.ones(4)})[1].wait()  # threads started
    baseline = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    checkpointer.save(folder + "/first", state)[1].wait()
    between = status("VmRSS")
    checkpointer.save(folder + "/second", state)[1].wait()
    peak = status("VmHWM")
print(json.dumps({"peak": peak - baseline, "between": between - baseline}))
"""


def save_twice(tmp_path, **options):
    run = subprocess.run(
        [sys.executable, "-c", SAVE_TWICE, json.dumps(options), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    memory = json.loads(run.stdout)
    print(f"{options}: peak {memory['peak'] / MIB:.0f} MiB, between saves {memory['between'] / MIB:.0f} MiB")
    return memory


def test_without_a_bound_a_save_stages_one_copy_and_the_next_reuses_it(tmp_path):
    memory = save_twice(tmp_path)
    assert memory["peak"] >= 0.95 * STATE_MIB * MIB  # the copy was really resident
    assert memory["peak"] <= 1.1 * STATE_MIB * MIB + SLACK  # one copy, across both saves
    assert memory["between"] >= 0.95 * STATE_MIB * MIB  # kept for the next save


def test_max_staging_bytes_bounds_staging_memory_and_writes_the_same_file(tmp_path):
    budget = 16 * MIB
    memory = save_twice(tmp_path / "bounded", max_staging_bytes=budget)
    assert memory["peak"] <= budget + SLACK
    save_twice(tmp_path / "unbounded")
    for save in ("first", "second"):
        bounded = (tmp_path / "bounded" / save / "checkpoint_0.pt").read_bytes()
        unbounded = (tmp_path / "unbounded" / save / "checkpoint_0.pt").read_bytes()
        assert len(bounded) > STATE_MIB * MIB
        assert bounded == unbounded
