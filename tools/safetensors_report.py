"""The safetensors part of `make bench`: loads and saves beside the safetensors package.

Each round runs bench/python/safetensors_bench.py once (its cases shuffled,
`--repeats` each); a figure is the median over a round's repeats, a ratio
the median over rounds of that round's ratio, so that a load that changes
between rounds affects both sides of it alike.
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
from typing import Callable, Dict, List, NamedTuple

from report_tables import goals_table, spread

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "python"
MIB = 1 << 20


class Case(NamedTuple):
    name: str
    ours: bool
    what: str


SAVE_CASES = [
    Case("safetensors_save_file", False, "`safetensors.torch.save_file` (written, not fsync'd)"),
    Case("safetensors_save_file_fsync", False, "the same, then fsync of the file and its folder"),
    Case("torch_ext_save", True, "`torch_ext.save(..., format=\"safetensors\")`: durable, a CRC32 per tensor"),
    Case("torch_ext_cpp", True, "C++ `write_safetensors_file`: the same"),
]
LOAD_CASES = [
    Case("safetensors_load_file", False, "`safetensors.torch.load_file`"),
    Case("torch_ext_load", True, "`torch_ext.safetensors.load_file`: every CRC32 verified"),
    Case("torch_ext_load_unverified", True, "the same with `verify=False`"),
    Case("torch_ext_cpp_load", True, "C++ `SafetensorsFile::load()`: verified"),
    Case("torch_ext_cpp_load_unverified", True, "C++ `SafetensorsFile::load({false})`"),
]


class Goal(NamedTuple):
    text: str
    value: Callable[[dict], float]
    kind: str  # "max", "min", "info"
    bound: float


def seconds(round_: dict, part: str, case: str) -> float:
    return statistics.median(round_[part][case])


def throughput_ratio(case: str, reference: str) -> Callable[[dict], float]:
    return lambda r: seconds(r, "saves", reference) / seconds(r, "saves", case)


def load_ratio(case: str, reference: str) -> Callable[[dict], float]:
    return lambda r: seconds(r, "loads", case) / seconds(r, "loads", reference)


GOALS = [
    Goal("Load, warm: ours unverified / `safetensors.torch.load_file` (Python)",
         load_ratio("torch_ext_load_unverified", "safetensors_load_file"), "max", 1.1),
    Goal("Load, warm: ours unverified / `safetensors.torch.load_file` (C++)",
         load_ratio("torch_ext_cpp_load_unverified", "safetensors_load_file"), "max", 1.1),
    Goal("Load, warm: ours verified / `safetensors.torch.load_file` (Python)",
         load_ratio("torch_ext_load", "safetensors_load_file"), "info", 0),
    Goal("Load, warm: verified / unverified, the cost of verification (Python)",
         load_ratio("torch_ext_load", "torch_ext_load_unverified"), "info", 0),
    Goal("Load, warm: verified / unverified, the cost of verification (C++)",
         load_ratio("torch_ext_cpp_load", "torch_ext_cpp_load_unverified"), "info", 0),
    Goal("Save throughput: ours durable / `safetensors.torch.save_file` (Python)",
         throughput_ratio("torch_ext_save", "safetensors_save_file"), "min", 0.9),
    Goal("Save throughput: ours durable / `safetensors.torch.save_file` (C++)",
         throughput_ratio("torch_ext_cpp", "safetensors_save_file"), "min", 0.9),
    Goal("Save throughput: ours durable / `save_file` + fsync, both durable (Python)",
         throughput_ratio("torch_ext_save", "safetensors_save_file_fsync"), "info", 0),
]


def run_rounds(binary: pathlib.Path, mib: int, rounds: int, smoke: bool) -> dict:
    binary = binary.resolve()
    data: dict = {"mib": mib, "rounds": []}
    with tempfile.TemporaryDirectory(prefix="torch_ext_bench.", dir=os.environ.get("TORCH_EXT_BENCH_DIR")) as tmp:
        for index in range(rounds):
            load = os.getloadavg()[0]
            command = [sys.executable, "safetensors_bench.py", "--mib", str(mib), "--out", tmp,
                       "--cpp-bench", str(binary), "--repeats", "1" if smoke else "3"]
            result = subprocess.run(command, capture_output=True, text=True, timeout=3600, cwd=BENCH)
            if result.returncode != 0:
                raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
            data["rounds"].append({"load_average": load, **json.loads(result.stdout.strip().splitlines()[-1])})
            print(f"safetensors round {index + 1}/{rounds} done (load {load:.2f})", file=sys.stderr)
    data["load_average_end"] = os.getloadavg()[0]
    data["date"] = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    return data


def evaluate(data: dict) -> List[dict]:
    rows = []
    for goal in GOALS:
        value = statistics.median(goal.value(r) for r in data["rounds"])
        holds = value <= goal.bound if goal.kind == "max" else value >= goal.bound if goal.kind == "min" else True
        sign = {"max": "<=", "min": ">=", "info": ""}[goal.kind]
        rows.append({"goal": goal.text, "value": value, "shown": f"{value:.3g}x",
                     "bound": "-" if goal.kind == "info" else f"{sign} {goal.bound:g}x",
                     "holds": holds, "informative": goal.kind == "info"})
    return rows



def markdown(data: dict, rows: List[dict], smoke: bool) -> List[str]:
    rounds = data["rounds"]
    first = rounds[0]
    loads = [r["load_average"] for r in rounds] + [data["load_average_end"]]
    size = f"{data['mib'] // 1024} GiB" if data["mib"] % 1024 == 0 else f"{data['mib']} MiB"
    lines = [
        "## safetensors",
        "",
        f"- State dict: the checkpoint benchmarks' (a transformer-like model's float32 parameters and AdamW state), "
        f"flattened into dotted keys: {first['tensors']} tensors, {first['bytes']:,} bytes ({size}).",
        f"- Measured {data.get('date', 'at an unrecorded time')}; {len(rounds)} rounds, the cases shuffled in each. "
        f"1-minute load average at the start of each round: min {min(loads):.2f}, median "
        f"{statistics.median(loads):.2f}, max {max(loads):.2f}." + (" Smoke mode: these figures mean nothing." if smoke else ""),
        "- Wall-clock times: the median of every repeat of every round (min-max); a ratio is the median over rounds "
        "of that round's ratio, each side the median of its repeats. "
        "Loads read one file of ours (the package reads it as its own), page cache warm, every value touched (the "
        "sum of every tensor). Each save writes a new file.",
        "",
    ]
    lines += goals_table(rows)
    lines += ["", "### Cases", "", "| part | case | what | ms | MiB/s |", "| --- | --- | --- | --- | --- |"]
    for part, cases in (("saves", SAVE_CASES), ("loads", LOAD_CASES)):
        for case in cases:
            times = [t for r in rounds for t in r[part][case.name]]
            rate = [r["bytes"] / MIB / t for r in rounds for t in r[part][case.name]]
            name = f"**{case.name}**" if case.ours else case.name
            lines.append(f"| {part[:-1]} | {name} | {case.what} | {spread(times, 1e3)} | {spread(rate)} |")
    lines += ["", "Ours in bold.", ""]
    return lines
