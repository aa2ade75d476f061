"""The benchmarks in smoke mode: every case runs and is reported.

Timings are not checked here (they are `make bench`'s job); allocation counts
are, being exact: a pending wrap allocates no more than `then`, a completed
source or a non-future once; and so are the bytes a checkpoint puts on disk.
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


def test_every_checkpoint_benchmark_case_runs_and_is_reported(cpp_build, tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import checkpoint_report

    command = [
        sys.executable, str(ROOT / "tools" / "bench_report.py"), "--smoke",
        "--checkpoint-bench", str(cpp_build / "bench" / "cpp" / "checkpoint_bench"),
        "--out", str(tmp_path),
    ]
    # The report script exits with an error if a part fails or a case gives no result.
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr

    data = json.loads((tmp_path / "benchmarks.json").read_text())["checkpoint"]
    report = (tmp_path / "benchmarks.md").read_text()
    assert (tmp_path / "benchmarks_checkpoint.png").stat().st_size > 0
    (size,) = data["rounds"][0]["sizes"].values()
    state_bytes = size["state"]["bytes"]
    for case in checkpoint_report.SAVE_CASES:
        assert f"| {case.name} |" in report or f"| **{case.name}** |" in report
        for save in size["cases"][case.name]["saves"]:
            assert 0 <= save["blocked_s"] <= save["staged_s"] <= save["durable_s"]
            # Each writes the state's bytes: the tensors' and their file's framing.
            assert state_bytes <= save["bytes"] < 1.1 * state_bytes + (1 << 20), (case.name, save)
    for label in checkpoint_report.BUDGETS:
        assert f"| {label} of the state |" in report
    for case in checkpoint_report.LOAD_CASES:
        assert f"| {case.name} |" in report or f"| **{case.name}** |" in report
        assert len(size["loads"]["cases"][case.name]["warm"]) == 1
    for goal in data["goals"]:
        assert f"| {goal['goal']} |" in report
    assert data["rounds"][0]["crc"]["crc32_gbps"] > 0


def test_every_safetensors_benchmark_case_runs_and_is_reported(cpp_build, tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import safetensors_report

    command = [
        sys.executable, str(ROOT / "tools" / "bench_report.py"), "--smoke", "--no-plot",
        "--safetensors-bench", str(cpp_build / "bench" / "cpp" / "safetensors_bench"),
        "--out", str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr

    data = json.loads((tmp_path / "benchmarks.json").read_text())["safetensors"]
    report = (tmp_path / "benchmarks.md").read_text()
    (round_,) = data["rounds"]
    assert round_["bytes"] > 15 << 20  # the 16 MiB state of smoke mode
    for part, cases in (("saves", safetensors_report.SAVE_CASES), ("loads", safetensors_report.LOAD_CASES)):
        for case in cases:
            assert f"| {case.name} |" in report or f"| **{case.name}** |" in report
            assert len(round_[part][case.name]) == 1 and round_[part][case.name][0] > 0


def test_every_dcp_benchmark_case_runs_and_is_reported(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import dcp_report

    command = [sys.executable, str(ROOT / "tools" / "bench_report.py"), "--smoke", "--no-plot", "--dcp",
               "--out", str(tmp_path)]
    # The report script exits with an error if a case gives no result.
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr

    data = json.loads((tmp_path / "benchmarks.json").read_text())["dcp"]
    report = (tmp_path / "benchmarks.md").read_text()
    (round_,) = data["rounds"]
    for case in dcp_report.CASES:
        if data["cold"] or not case.name.endswith("_cold"):
            assert round_[case.name] > 0, case.name
            assert f"| {case.name} |" in report or f"| **{case.name}** |" in report
    for case in dcp_report.ASYNC_CASES:
        assert 0 <= round_[case.name]["blocked_s"] <= round_[case.name]["durable_s"], case.name
        assert f"| **{case.name}** |" in report or f"| {case.name} |" in report
    for goal in data["goals"]:
        assert f"| {goal['goal']} |" in report


def test_every_consolidation_benchmark_case_runs_and_is_reported(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import consolidate_report

    command = [sys.executable, str(ROOT / "tools" / "bench_report.py"), "--smoke", "--no-plot", "--consolidate",
               "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr

    data = json.loads((tmp_path / "benchmarks.json").read_text())["consolidate"]
    report = (tmp_path / "benchmarks.md").read_text()
    (round_,) = data["rounds"]
    assert data["tensor_bytes"] > 7 << 20  # the 8 MiB model of smoke mode
    for case in consolidate_report.CASES:
        assert f"| {case.name} |" in report or f"| **{case.name}** |" in report
        assert round_["cases"][case.name]["peak_rss"] > 0 and round_["cases"][case.name]["seconds"] >= 0
    for goal in data["goals"]:
        assert f"| {goal['goal']} |" in report


def test_every_sharded_scale_phase_runs_and_is_reported(cpp_build, tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import dcp_scale_report

    command = [
        sys.executable, str(ROOT / "tools" / "bench_report.py"), "--smoke", "--no-plot",
        "--dcp-scale-bench", str(cpp_build / "bench" / "cpp" / "dcp_scale_bench"), "--out", str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    data = json.loads((tmp_path / "benchmarks.json").read_text())["dcp_scale"]
    report = (tmp_path / "benchmarks.md").read_text()
    (size,) = data["sizes"]
    assert (size["ranks"], size["tensors"], size["chunks"]) == (8, 10, 80)
    for phase in dcp_scale_report.PHASES:
        assert size["phases"][phase.name]["seconds"] > 0, phase.name
        assert size["phases"][phase.name]["peak_rss"] > 0, phase.name
        assert f"| {phase.name} |" in report
    # The `.metadata` written is the one pickled; the load of 4 ranks reads
    # two saved chunks into each of its rank's 10 parts.
    assert size["metadata_bytes"] == size["pickle_bytes"] > 0
    assert size["load_reads"] == 20
    assert size["plan_bytes"] > 0 and size["report_bytes"] > 0
