"""The DCP part of `make bench`: torch_ext.dcp's FileSystemWriter and
FileSystemReader against upstream's under dcp.save, dcp.load and
dcp.async_save, and load_dcp of a 4-rank folder against dcp_to_torch_save.

bench/python/dcp_bench.py runs the rounds (every case once per round, in
random order) in one process; here are the goals, the ratios (the median
over rounds of that round's ratio, so that a disk or a load that changes
between rounds affects both sides alike) and the report's section.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
from typing import Callable, List, NamedTuple

from report_tables import goals_table, spread

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "python"


class Case(NamedTuple):
    name: str
    ours: bool
    what: str


CASES = [
    Case("save_upstream", False, "`dcp.save` through upstream's `FileSystemWriter`"),
    Case("save_torch_ext", True, "`dcp.save` through `torch_ext.dcp.FileSystemWriter`"),
    Case("save_plain_write", False, "the disk: every tensor's bytes written in turn to one file, then fsync"),
    Case("load_upstream_warm", False, "`dcp.load` through upstream's `FileSystemReader`, page cache warm"),
    Case("load_torch_ext_warm", True, "`dcp.load` through `torch_ext.dcp.FileSystemReader`, warm (CRC32s verified)"),
    Case("load_torch_ext_unverified_warm", True, "the same with `verify=False`, warm"),
    Case("load_upstream_cold", False, "`dcp.load` through upstream's reader, page cache cold"),
    Case("load_torch_ext_cold", True, "`dcp.load` through ours, cold (verified)"),
    Case("load_torch_ext_unverified_cold", True, "the same with `verify=False`, cold"),
    Case("whole_dcp_to_torch_save", False, "a 4-rank folder in one process: `dcp_to_torch_save` + `torch.load`"),
    Case("whole_load_dcp", True, "a 4-rank folder in one process: `torch_ext.load_dcp`"),
]
ASYNC_CASES = [
    Case("async_upstream", False, "`dcp.async_save` through upstream's `FileSystemWriter`"),
    Case("async_torch_ext", True, "`dcp.async_save` through `torch_ext.dcp.FileSystemWriter`"),
]


class Goal(NamedTuple):
    text: str
    value: Callable[[dict], float]  # of one round
    bound: float  # at least; -inf: for information
    needs_cold: bool = False


def ratio(numerator: str, denominator: str) -> Callable[[dict], float]:
    return lambda round_: round_[numerator] / round_[denominator]


def loop_ratio(round_: dict) -> float:
    return round_["async_torch_ext"]["loop_speed"] / round_["async_upstream"]["loop_speed"]


GOALS = [
    Goal("`dcp.save` throughput: ours / upstream's `FileSystemWriter`", ratio("save_upstream", "save_torch_ext"), 1.0),
    Goal("`dcp.save` throughput: ours / a plain write + fsync", ratio("save_plain_write", "save_torch_ext"), 0.9),
    Goal("`dcp.load` speed, warm: ours / upstream's", ratio("load_upstream_warm", "load_torch_ext_warm"), 2.0),
    Goal("`dcp.load` speed, cold: ours / upstream's", ratio("load_upstream_cold", "load_torch_ext_cold"), 2.0, True),
    Goal("4-rank folder in one process: `load_dcp` / `dcp_to_torch_save` + `torch.load`",
         ratio("whole_dcp_to_torch_save", "whole_load_dcp"), 3.0),
    Goal("`dcp.async_save`: training loop speed during the save, ours / upstream's", loop_ratio, float("-inf")),
]


def run(mib: int, rounds: int, threads: int, smoke: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="torch_ext_dcp_bench.", dir=os.environ.get("TORCH_EXT_BENCH_DIR")) as tmp:
        command = [sys.executable, "dcp_bench.py", "--mib", str(mib), "--out", tmp, "--rounds", str(rounds),
                   "--threads", str(threads)] + (["--smoke"] if smoke else [])
        result = subprocess.run(command, capture_output=True, text=True, timeout=3600, cwd=BENCH)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    missing = [case.name for case in CASES + ASYNC_CASES
               if case.name not in data["rounds"][0] and (data["cold"] or not case.name.endswith("_cold"))]
    if missing:
        raise SystemExit(f"the DCP benchmark gave no result for {', '.join(missing)}")
    data["mib"] = mib
    data["date"] = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    return data


def evaluate(data: dict) -> List[dict]:
    rows = []
    for goal in GOALS:
        if goal.needs_cold and not data["cold"]:
            rows.append({"goal": goal.text, "shown": "not run: the page cache could not be dropped",
                         "bound": f">= {goal.bound:.2f}x", "holds": False, "informative": False})
            continue
        value = statistics.median(goal.value(round_) for round_ in data["rounds"])
        informative = goal.bound == float("-inf")
        rows.append({"goal": goal.text, "value": value, "shown": f"{value:.2f}x",
                     "bound": "-" if informative else f">= {goal.bound:.2f}x",
                     "holds": informative or value >= goal.bound, "informative": informative})
    return rows



def markdown(data: dict, rows: List[dict], smoke: bool) -> List[str]:
    rounds, loads, state = data["rounds"], data["load_averages"], data["state"]
    gib = state["bytes"] / 2**30
    lines = [
        "## DCP checkpoints (`torch_ext.dcp.FileSystemWriter` / `FileSystemReader`)",
        "",
        f"- State dict: the checkpoint part's transformer-like model and AdamW state, {state['tensors']} tensors, "
        f"{state['bytes']:,} bytes, in one process without a process group; both writers with "
        f"`thread_count={data['threads']}` and fsync. The 4-rank folder: the same layout saved by 4 ranks "
        "(gloo, Shard(0) DTensors) through upstream's writer.",
        f"- Measured {data.get('date', 'at an unrecorded time')}; {len(rounds)} rounds, the cases shuffled in each; "
        f"1-minute load average at the start of each round and at the end: "
        + ", ".join(f"{load:.2f}" for load in loads) + "."
        + ("" if data["cold"] else " The page cache could not be dropped here: no cold figures.")
        + (" Smoke mode: these figures mean nothing." if smoke else ""),
        "- Wall-clock seconds (what `load_dcp` and `torch.load` return summed within the time; `dcp.load` fills "
        "its target before it returns): median over rounds (min-max). A ratio "
        "is the median over rounds of that round's ratio. Cold: the folder's files dropped from the page cache "
        "with `posix_fadvise(DONTNEED)` (checked by `mincore`).",
        "",
    ]
    lines += goals_table(rows)
    lines += ["", "### Cases", "", "| case | what | seconds | GiB/s |", "| --- | --- | --- | --- |"]
    for case in CASES:
        if case.name not in rounds[0]:
            continue
        seconds = [round_[case.name] for round_ in rounds]
        name = f"**{case.name}**" if case.ours else case.name
        lines.append(f"| {name} | {case.what} | {spread(seconds, 1, 3)} | "
                     f"{spread([gib / s for s in seconds], 1, 2)} |")
    lines += [
        "",
        "| async case | what | call returned (ms) | durable (s) | loop speed during the save |",
        "| --- | --- | --- | --- | --- |",
    ]
    for case in ASYNC_CASES:
        saves = [round_[case.name] for round_ in rounds]
        name = f"**{case.name}**" if case.ours else case.name
        lines.append(
            f"| {name} | {case.what} | {spread([s['blocked_s'] for s in saves], 1e3)} | "
            f"{spread([s['durable_s'] for s in saves], 1, 3)} | {spread([s['loop_speed'] for s in saves], 1, 2)} |")
    lines += [
        "",
        "Ours in bold. Loop speed: training steps of a small MLP per second on the calling thread from the "
        "call's return to the save's end (every stall counted: waits for the GIL or a CPU) / idle (1.00 = "
        "unslowed); both calls stage the state with the same `DefaultStager` (a copy on the calling thread) "
        "before they return.",
        "",
    ]
    return lines
