"""The sharded-save scale part of `make bench`: rank 0's commit and one rank's load planning at thousands of ranks.

bench/cpp/dcp_scale_bench runs rank 0's steps of save_sharded on the plans
and write results of RANKS synthesized ranks (a model of TENSORS tensors,
each split by rows over every rank), each step timed alone, then one rank's
load planning from the `.metadata` written. Each size runs once, in a
process of its own, so that its peak RSS is its own.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import subprocess
import tempfile
from typing import List, NamedTuple

from report_tables import goals_table

MIB = 1 << 20
SIZES = ((1_024, 1_000), (8_192, 1_000))
SMOKE_SIZES = ((8, 10),)


class Phase(NamedTuple):
    name: str
    what: str


SAVE_PHASES = [
    Phase("decode_plans", "decode every rank's plan as it came through the store"),
    Phase("merge_plans", "check the plans (one kind, dtype and shape per key; parts tile the tensor), "
          "dedup, answer every rank"),
    Phase("join_results", "decode every rank's write results, join them into the Metadata, check it"),
    Phase("pickle_metadata", "pickle the Metadata as upstream's reader takes it"),
    Phase("commit_metadata", "pickle again and write `.metadata` durably (fsync'd, renamed in place)"),
]
LOAD_PHASES = [
    Phase("read_metadata", "one rank of the load: read and check `.metadata`"),
    Phase("plan_load", "that rank: the saved chunks each of its parts overlaps (load_sharded before reading)"),
]
PHASES = SAVE_PHASES + LOAD_PHASES


def run(binary: pathlib.Path, smoke: bool) -> dict:
    sizes = []
    for ranks, tensors in SMOKE_SIZES if smoke else SIZES:
        with tempfile.TemporaryDirectory(prefix="torch_ext_bench.", dir=os.environ.get("TORCH_EXT_BENCH_DIR")) as tmp:
            result = subprocess.run([str(binary), str(ranks), str(tensors), str(pathlib.Path(tmp) / "ckpt")],
                                    capture_output=True, text=True, timeout=3600)
        if result.returncode != 0:
            raise SystemExit(f"dcp_scale_bench {ranks} {tensors} failed:\n{result.stdout}\n{result.stderr}")
        sizes.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return {"sizes": sizes, "load_average": os.getloadavg()[0],
            "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"}


def commit_seconds(size: dict) -> float:
    """Rank 0's whole part of the commit: every save phase but pickle_metadata (which commit_metadata does again)."""
    return sum(size["phases"][phase.name]["seconds"] for phase in SAVE_PHASES if phase.name != "pickle_metadata")


def evaluate(data: dict) -> List[dict]:
    """No bound: how rank 0's time and memory per chunk grow from the smallest size to the largest."""
    small, large = data["sizes"][0], data["sizes"][-1]
    if small["chunks"] == large["chunks"]:
        return []
    rows = []
    loaded = "load_skipped" not in large
    for text, value in (
        ("rank 0's commit, seconds per chunk", commit_seconds),
        ("rank 0's peak RSS per chunk", lambda size: size["peak_rss_save"]),
        ("one rank's load planning, seconds per saved chunk",
         lambda size: size["phases"]["read_metadata"]["seconds"] + size["phases"]["plan_load"]["seconds"]),
    )[:3 if loaded else 2]:
        ratio = (value(large) / large["chunks"]) / (value(small) / small["chunks"])
        rows.append({"goal": f"Scale: {text}, {large['ranks']:,} ranks / {small['ranks']:,} ranks",
                     "value": ratio, "shown": f"{ratio:.3g}x", "bound": "-", "holds": True, "informative": True})
    return rows


def markdown(data: dict, rows: List[dict], smoke: bool) -> List[str]:
    sizes = data["sizes"]
    lines = [
        "## Sharded save at scale (rank 0's commit, one rank's load planning)",
        "",
        "- Layout: a model of bf16 tensors of 4,096 columns, each split by rows over every rank (2 rows each): "
        "one chunk per rank and tensor. The ranks' plans and write results are synthesized and encoded as "
        "the ranks encode them; rank 0's own code then runs on them, no store, no threads for ranks. The "
        "load plans one rank of a job of half as many ranks (each part overlaps two saved chunks).",
        f"- Measured {data.get('date', 'at an unrecorded time')}, each size once, in a process of its own; "
        f"1-minute load average {data['load_average']:.2f}. Peak RSS: VmHWM after the phase (the load's "
        "restarted from what is left after the save). The load is left out where reading `.metadata` would "
        "need more memory than the machine has available (about 32 bytes per byte of it, measured)."
        + (" Smoke mode: these figures mean nothing." if smoke else ""),
        "",
    ]
    if rows:
        lines += goals_table(rows) + [""]
    header = " | ".join(f"{size['ranks']:,} ranks x {size['tensors']:,}" for size in sizes)
    lines += ["### Phases", "", f"| phase | what | {header} |", "| --- | --- |" + " --- |" * len(sizes)]
    for phase in PHASES:
        cells = " | ".join(
            f"{size['phases'][phase.name]['seconds']:.3g} s, {size['phases'][phase.name]['peak_rss'] / MIB:,.0f} MiB"
            if phase.name in size["phases"] else "left out: " + size["load_skipped"] for size in sizes)
        lines.append(f"| {phase.name} | {phase.what} | {cells} |")
    lines += ["", "### Sizes", "", f"| | {header} |", "| --- |" + " --- |" * len(sizes)]
    for label, key, scale in (
        ("chunks", "chunks", 1), ("plans rank 0 gets, MiB (all)", "plan_bytes", MIB),
        ("one rank's plan, KiB", "largest_plan_bytes", 1024), ("write results rank 0 gets, MiB (all)", "report_bytes", MIB),
        ("`.metadata`, MiB", "metadata_bytes", MIB), ("rank 0's peak RSS, MiB", "peak_rss_save", MIB),
        ("one loading rank's regions to read", "load_reads", 1),
    ):
        lines.append(f"| {label} | " + " | ".join("-" if key not in size else f"{size[key] / scale:,.1f}" if scale > 1
                                                   else f"{size[key]:,}" for size in sizes) + " |")
    lines.append("")
    return lines
