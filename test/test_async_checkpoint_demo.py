"""`make demo` at a small size: examples/async_checkpoint_demo.cpp stops its
run, resumes it in a new process from the latest committed step, finds it
bitwise equal to the same run uninterrupted, and prints its table. Run twice
on one folder, as `make demo` is: the second run starts afresh."""

import os
import re
import subprocess

TIMEOUT_S = 300
# Saves at 4 and 8 before the stop at 10; the resumed run redoes 9 and 10 and
# saves 12.
FLAGS = ["--mib", "1", "--steps", "12", "--interval", "4", "--stop-at", "10", "--batch", "8"]


def test_the_demo_stops_resumes_and_matches_the_uninterrupted_run(cpp_build, tmp_path):
    binary = cpp_build / "examples" / "async_checkpoint_demo"
    root = tmp_path / "ckpt"
    for _ in range(2):
        result = subprocess.run(
            [str(binary), *FLAGS, "--out", str(root)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert "stopped at step 10; committed steps: 4, 8\n" in out, out
        assert re.search(r"resumed in a new process \(pid \d+\) from step 8, the latest committed one", out), out
        assert "finished at step 12; committed steps: 8, 12\n" in out, out
        assert "parameters, buffers, optimizer state, RNG bitwise identical\n" in out, out
        rows = re.findall(r"^ +(\d+) +[\d.]+ s .*$", out, re.MULTILINE)
        assert rows == ["4", "8", "12"], out
        assert out.count("(resumed run)") == 1 and re.search(r"^ +12 .*\(resumed run\)$", out, re.MULTILINE), out
        # Retention's two steps, and nothing the demo measured with.
        assert sorted(os.listdir(root)) == ["step_12", "step_8"]
