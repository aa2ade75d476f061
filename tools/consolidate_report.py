"""The consolidation part of `make bench`: a 2-rank FSDP2 checkpoint into safetensors, ours beside upstream's.

One job (bench/python/fsdp_checkpoint.py under torch.distributed.run)
saves the model as a DCP checkpoint and as upstream's sharded safetensors;
then each round runs every case of bench/python/consolidate_bench.py once,
in a shuffled order, each in a process of its own: its time and its peak
RSS. A ratio is the median over rounds of that round's ratio.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Callable, List, NamedTuple

from report_tables import goals_table, spread

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "python" / "consolidate_bench.py"
MIB = 1 << 20
# Slack in the memory bound for what the conversion keeps beside its batch (readers, writers' buffers).
BOUND_SLACK = 64 * MIB


class Case(NamedTuple):
    name: str
    ours: bool
    what: str


CASES = [
    Case("baseline", False, "the interpreter with torch, torch_ext and upstream's module imported: the floor"),
    Case("upstream", False, "upstream's `consolidate_safetensors_files` of its HuggingFaceStorageWriter shards "
         "(not fsync'd)"),
    Case("upstream_fsync", False, "the same, then every output file and the folder fsync'd"),
    Case("torch_ext", True, "`torch_ext convert DCP OUT --to safetensors`: streamed, CRC32s checked and written, durable"),
]


class Goal(NamedTuple):
    text: str
    value: Callable[[dict, dict], float]
    kind: str  # "max" or "info"
    bound: float


def seconds(round_: dict, case: str) -> float:
    return round_["cases"][case]["seconds"]


def above_floor(round_: dict, case: str) -> float:
    return round_["cases"][case]["peak_rss"] - round_["cases"]["baseline"]["peak_rss"]


def memory_bound(data: dict) -> float:
    """The bound the README states: three times the larger of a batch and the largest tensor, with some slack."""
    return 3 * max(data["batch_bytes"], data["largest_tensor"]) + BOUND_SLACK


GOALS = [
    Goal("Time: ours (durable) / upstream's (not fsync'd)",
         lambda r, d: seconds(r, "torch_ext") / seconds(r, "upstream"), "info", 0),
    Goal("Time: ours / upstream's then fsync'd, both durable",
         lambda r, d: seconds(r, "torch_ext") / seconds(r, "upstream_fsync"), "info", 0),
    Goal("Peak RSS above the floor: ours / upstream's",
         lambda r, d: above_floor(r, "torch_ext") / above_floor(r, "upstream"), "info", 0),
    Goal("Peak RSS above the floor: ours / the checkpoint's tensors",
         lambda r, d: above_floor(r, "torch_ext") / d["tensor_bytes"], "info", 0),
    Goal("Peak RSS above the floor: ours / the stated bound, 3 x max(batch, largest tensor) + 64 MiB",
         lambda r, d: above_floor(r, "torch_ext") / memory_bound(d), "max", 1.0),
]


def _python(*args: str, timeout: int = 3600) -> str:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def run_rounds(mib: int, rounds: int, smoke: bool) -> dict:
    from torch_ext.cli.checkpoints import STREAM_BYTES

    with tempfile.TemporaryDirectory(prefix="torch_ext_bench.", dir=os.environ.get("TORCH_EXT_BENCH_DIR")) as tmp:
        folder = pathlib.Path(tmp) / "job"
        _python(str(BENCH), "prepare", str(folder), "--mib", str(mib))
        info = json.loads(_python("-m", "torch_ext", "info", str(folder / "dcp"), "--json"))
        tensors = [entry for entry in info["entries"] if entry["kind"] == "tensor"]
        data: dict = {
            "mib": mib, "tensors": len(tensors), "tensor_bytes": info["totals"]["tensor_bytes"],
            "largest_tensor": max(entry["bytes"] for entry in tensors), "batch_bytes": STREAM_BYTES,
            "ranks": 2, "rounds": [],
        }
        for index in range(rounds):
            round_: dict = {"load_average": os.getloadavg()[0], "cases": {}}
            for case in random.sample(CASES, len(CASES)):
                out = pathlib.Path(tmp) / "out"
                shutil.rmtree(out, ignore_errors=True)
                line = _python(str(BENCH), "case", case.name, str(folder), str(out)).strip().splitlines()[-1]
                round_["cases"][case.name] = json.loads(line)
            data["rounds"].append(round_)
            print(f"consolidation round {index + 1}/{rounds} done (load {round_['load_average']:.2f})",
                  file=sys.stderr)
    data["load_average_end"] = os.getloadavg()[0]
    data["date"] = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    return data


def evaluate(data: dict) -> List[dict]:
    rows = []
    for goal in GOALS:
        value = statistics.median(goal.value(r, data) for r in data["rounds"])
        holds = value <= goal.bound if goal.kind == "max" else True
        rows.append({"goal": goal.text, "value": value, "shown": f"{value:.3g}x",
                     "bound": "-" if goal.kind == "info" else f"<= {goal.bound:g}x",
                     "holds": holds, "informative": goal.kind == "info"})
    return rows



def markdown(data: dict, rows: List[dict], smoke: bool) -> List[str]:
    rounds = data["rounds"]
    loads = [r["load_average"] for r in rounds] + [data["load_average_end"]]
    lines = [
        "## DCP to safetensors consolidation",
        "",
        f"- Checkpoint: an FSDP2 model saved by {data['ranks']} ranks (gloo, CPU) with `dcp.save`: "
        f"{data['tensors']} tensors, {data['tensor_bytes']:,} bytes, every tensor in one chunk per rank; the "
        f"largest {data['largest_tensor']:,} bytes. Ours reads its DCP checkpoint (FileSystemWriter); upstream "
        "consolidates the shards its HuggingFaceStorageWriter(save_distributed=True) wrote in the same job. "
        "Both outputs hold the same tensors, byte for byte.",
        f"- Measured {data.get('date', 'at an unrecorded time')}; {len(rounds)} rounds, the cases shuffled in "
        f"each, each case a process of its own, page cache warm. 1-minute load average at the start of each "
        f"round: min {min(loads):.2f}, median {statistics.median(loads):.2f}, max {max(loads):.2f}."
        + (" Smoke mode: these figures mean nothing." if smoke else ""),
        f"- Time: the operation's wall clock, imports left out. Peak RSS: getrusage's ru_maxrss of the case's "
        f"process; above the floor: less the baseline case's. Ours reads {data['batch_bytes'] // MIB} MiB of "
        "tensors at a time (or one larger tensor).",
        "",
    ]
    lines += goals_table(rows)
    lines += ["", "### Cases", "", "| case | what | s | peak RSS, MiB | above the floor, MiB |",
              "| --- | --- | --- | --- | --- |"]
    for case in CASES:
        times = [r["cases"][case.name]["seconds"] for r in rounds]
        peaks = [r["cases"][case.name]["peak_rss"] / MIB for r in rounds]
        above = [above_floor(r, case.name) / MIB for r in rounds]
        name = f"**{case.name}**" if case.ours else case.name
        lines.append(f"| {name} | {case.what} | {spread(times, digits=2)} | {spread(peaks)} | {spread(above)} |")
    lines += ["", "Ours in bold.", ""]
    return lines
