"""The benchmarks in smoke mode: every case runs and is reported.

Timings are not checked here (they are `make bench`'s job); allocation counts
are, being exact: a pending wrap allocates no more than `then`, a completed
source or a non-future once.
"""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_every_benchmark_case_runs_and_is_reported(cpp_build, tmp_path):
    command = [
        sys.executable, str(ROOT / "tools" / "bench_report.py"), "--smoke", "--no-plot",
        "--cpp-bench", str(cpp_build / "bench" / "cpp" / "future_utils_bench"),
        "--out", str(tmp_path),
    ]
    # The report script exits with an error if any case gave no result.
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr

    data = json.loads((tmp_path / "benchmarks.json").read_text())
    report = (tmp_path / "benchmarks.md").read_text()
    assert len(data["samples"]) >= 19
    for case, samples in data["samples"].items():
        assert f"| {case} |" in report or f"| **{case}** |" in report
        assert len(samples) == 1 and samples[0] > 0
    allocations = data["allocations"]
    assert allocations["BM_WrapPending"] <= allocations["BM_Then"], allocations
    assert allocations["BM_WrapCompleted"] <= 1, allocations
    assert allocations["BM_WrapNonFuture"] <= 1, allocations
