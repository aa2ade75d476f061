"""Runs the benchmarks in interleaved rounds and writes the report.

Five parts, each run when asked. Checkpoints (--checkpoint-bench, its
binary): tools/checkpoint_report.py. safetensors (--safetensors-bench, its
binary): tools/safetensors_report.py. DCP checkpoints (--dcp):
tools/dcp_report.py. DCP to safetensors consolidation (--consolidate):
tools/consolidate_report.py. Sharded saves at scale (--dcp-scale-bench, its
binary): tools/dcp_scale_report.py. Future helpers
(--cpp-bench): each round runs the C++ benchmark (Google Benchmark: five
repetitions of each case, all in random order), then the Python and the
TorchScript benchmarks (cases shuffled, repeats interleaved). Every figure is
CPU time per operation: the median over rounds; every ratio is the median
over rounds of that round's ratio, so that a load that changes between
rounds affects both sides of it alike.

Writes benchmarks.md, benchmarks.json and (unless --no-plot)
benchmarks.png and benchmarks_checkpoint.png into --out; a part not run is
kept from the benchmarks.json there. --smoke runs one short round at small
sizes: it checks that every case runs and reports, and its figures mean
nothing.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import random
import statistics
import subprocess
import sys
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import checkpoint_report
import consolidate_report
import dcp_report
import dcp_scale_report
import safetensors_report

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYTHON_SUITES = {
    "python": ROOT / "bench" / "python" / "future_utils_bench.py",
    "torchscript": ROOT / "bench" / "python" / "torchscript_bench.py",
}
CHAIN_LINKS = (1_000, 10_000, 100_000, 1_000_000)


class Case(NamedTuple):
    name: str
    suite: str
    ours: bool
    what: str


CASES = [
    Case("BM_CreateAndComplete", "C++", False, "create a pending future, complete it (anchor)"),
    Case("BM_Then", "C++", False, "create, `then(cb returning None)`, complete"),
    Case("BM_WrapPending", "C++", True, "create, `wrap_future`, complete"),
    Case("BM_WrapCompleted", "C++", True, "`wrap_future` of a completed future"),
    Case("BM_WrapNonFuture", "C++", True, "`wrap_future` of a non-future"),
    Case("BM_AddCallback", "C++", False, "create, raw `addCallback`, complete"),
    Case("BM_OnComplete", "C++", True, "create, `on_complete`, complete"),
    *(
        Case(f"BM_WrapChain/{links}", "C++", True, f"chain of {links:,} wraps, per link")
        for links in CHAIN_LINKS
    ),
    Case("torch_bare", "Python", False, "torch future: create, set_result, done (anchor)"),
    Case("torch_then", "Python", False, "torch future: `then(lambda f: None)`"),
    Case("torch_ext_torch", "Python", True, "torch future: `torch_ext.wrap_future`"),
    Case("concurrent_bare", "Python", False, "concurrent future: create, set_result, done (anchor)"),
    Case("upstream_concurrent", "Python", False, "concurrent future: upstream `wrap_future`"),
    Case("torch_ext_concurrent", "Python", True, "concurrent future: `torch_ext.wrap_future`"),
    Case("script_fork_wait", "TorchScript", False, "fork, wait"),
    Case("script_fork_wrap_wait", "TorchScript", True, "fork, `torch_ext::wrap_future`, wait"),
]


class Goal(NamedTuple):
    text: str
    numerator: str
    denominator: str
    kind: str  # "ratio_max", "ratio_min" or "difference_max"
    bound: float
    why_if_missed: str = ""


GOALS = [
    Goal(
        "C++ pending: `wrap_future` / `then`", "BM_WrapPending", "BM_Then", "ratio_max", 1.00,
        "`wrap_future` makes the same allocations as `then` and skips the device guards that "
        "are no-ops on CPU, but it pays for what `then` lacks: reading the source's error (a "
        "lock: c10 has no lock-free accessor) and a thread-local lookup that keeps chains in "
        "bounded stack. Per-round ratios spread widely on a loaded machine (benchmarks.json "
        "holds every round's figures).",
    ),
    Goal(
        "C++ completed source: `wrap_future` - bare create-and-complete (ns)",
        "BM_WrapCompleted", "BM_CreateAndComplete", "difference_max", 60.0,
    ),
    Goal(
        "upstream Python (concurrent) / C++ `wrap_future`, per link",
        "upstream_concurrent", "BM_WrapPending", "ratio_min", 25.0,
    ),
    Goal("Python: upstream (concurrent) / ours (torch future)", "upstream_concurrent", "torch_ext_torch", "ratio_min", 1.5),
    Goal("Python: ours (torch future) / torch `then`", "torch_ext_torch", "torch_then", "ratio_max", 1.00),
    Goal("Python: ours (concurrent) / upstream (concurrent)", "torch_ext_concurrent", "upstream_concurrent", "ratio_max", 1.00),
    Goal(
        "Deep chain: per link at 1e6 / per link at 1e3",
        "BM_WrapChain/1000000", "BM_WrapChain/1000", "ratio_max", 1.5,
        "The cost per link is flat within the caches (1e3 to 1e4) and again beyond them (1e5 to "
        "1e6); the step between is memory: a link makes four heap blocks (its future, its "
        "callback, the callback vector, and the queued copy of the callback past 16 nested "
        "links), so a chain of 1e5 links or more no longer fits in the caches, and completing "
        "and freeing it misses them. Nothing in the code grows with depth (no recursion, no "
        "per-chain state).",
    ),
    Goal("TorchScript: fork, wrap, wait / fork, wait (no goal)", "script_fork_wrap_wait", "script_fork_wait", "ratio_max", float("inf")),
    Goal("C++: `on_complete` / raw `addCallback` (no goal)", "BM_OnComplete", "BM_AddCallback", "ratio_max", float("inf")),
]

# Allocations are deterministic: (case, anchor subtracted or None, most allowed,
# why if missed).
ALLOCATION_GOALS = [
    (
        "BM_WrapPending", "BM_CreateAndComplete", 2,
        "Three: the wrapped future, the source's callback vector, and the heap block of the "
        "std::function that c10 stores the callback in. libstdc++ keeps a callable in place "
        "only if it is trivially copyable, and ours owns the wrapped future (an intrusive_ptr), "
        "as `then`'s owns its child (`then` makes the same three). Reaching two would mean "
        "specializing libstdc++'s internal `std::__is_location_invariant`, which we do not.",
    ),
    ("BM_WrapCompleted", None, 1, ""),
    ("BM_WrapNonFuture", None, 1, ""),
]

TIME_UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def run_cpp(binary: pathlib.Path, smoke: bool) -> Dict[str, dict]:
    """Median of each case over repetitions run in random order."""
    output = subprocess.run(
        [
            str(binary),
            "--benchmark_format=json",
            f"--benchmark_min_time={0.001 if smoke else 0.05}",
            f"--benchmark_repetitions={2 if smoke else 5}",
            "--benchmark_enable_random_interleaving=true",
            "--benchmark_report_aggregates_only=true",
        ],
        check=True, capture_output=True, text=True,
    ).stdout
    results = {}
    for run in json.loads(output)["benchmarks"]:
        if run.get("aggregate_name") != "median":
            continue
        ns = run["cpu_time"] * TIME_UNIT_NS[run["time_unit"]]
        links = run.get("links", 1)
        results[run["run_name"]] = {"ns": ns / links, "allocs": run["allocs_per_op"]}
    return results


def run_python(script: pathlib.Path, smoke: bool) -> Dict[str, dict]:
    command = [sys.executable, str(script)] + (["--smoke"] if smoke else [])
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return {name: {"ns": ns} for name, ns in json.loads(output).items()}


def run_rounds(binary: pathlib.Path, rounds: int, smoke: bool) -> dict:
    samples: Dict[str, List[float]] = {case.name: [] for case in CASES}
    allocations: Dict[str, float] = {}
    loads = []
    for index in range(rounds):
        loads.append(os.getloadavg()[0])
        results = run_cpp(binary, smoke)
        for suite, script in PYTHON_SUITES.items():
            results.update(run_python(script, smoke))
        missing = [case.name for case in CASES if case.name not in results]
        if missing:
            raise SystemExit(f"round {index + 1}: no result for {', '.join(missing)}")
        for case in CASES:
            samples[case.name].append(results[case.name]["ns"])
            if "allocs" in results[case.name]:
                allocations[case.name] = results[case.name]["allocs"]
        print(f"round {index + 1}/{rounds} done (load {loads[-1]:.2f})", file=sys.stderr)
    loads.append(os.getloadavg()[0])
    return {"samples": samples, "allocations": allocations, "loads": loads, "date": now()}


def now() -> str:
    return f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"


def evaluate(data: dict) -> List[dict]:
    samples = data["samples"]
    rows = []
    for goal in GOALS:
        pairs = zip(samples[goal.numerator], samples[goal.denominator])
        if goal.kind == "difference_max":
            value = statistics.median(a - b for a, b in pairs)
            holds = value <= goal.bound
            shown, bound = f"{value:+.0f} ns", f"<= {goal.bound:.0f} ns"
        else:
            value = statistics.median(a / b for a, b in pairs)
            holds = value <= goal.bound if goal.kind == "ratio_max" else value >= goal.bound
            shown = f"{value:.2f}x"
            sign = "<=" if goal.kind == "ratio_max" else ">="
            bound = "-" if goal.bound == float("inf") else f"{sign} {goal.bound:.2f}x"
        rows.append({"goal": goal.text, "value": value, "shown": shown, "bound": bound,
                     "holds": holds, "informative": goal.bound == float("inf"),
                     "why": "" if holds else goal.why_if_missed})
    allocations = data["allocations"]
    for case, anchor, most, why in ALLOCATION_GOALS:
        value = allocations[case] - (allocations[anchor] if anchor else 0)
        text = f"allocations per wrap, `{case}`" + (f" - `{anchor}`" if anchor else "")
        rows.append({"goal": text, "value": value, "shown": f"{value:g}", "bound": f"<= {most}",
                     "holds": value <= most, "informative": False,
                     "why": "" if value <= most else why})
    return rows


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}, {os.cpu_count()} cores, {memory_gib:.0f} GiB; "
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, "
        f"torch {importlib.metadata.version('torch')}"
    )


def write_markdown(
    path: pathlib.Path, futures: Optional[dict], goals: List[dict], rounds: int,
    checkpoint: Optional[dict], checkpoint_goals: List[dict], smoke: bool,
    safetensors: Optional[dict] = None, safetensors_goals: Optional[List[dict]] = None,
    dcp: Optional[dict] = None, dcp_goals: Optional[List[dict]] = None,
    consolidate: Optional[dict] = None, consolidate_goals: Optional[List[dict]] = None,
    dcp_scale: Optional[dict] = None, dcp_scale_goals: Optional[List[dict]] = None,
) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`tools/bench_report.py`)"
        + (" in smoke mode: these figures mean nothing." if smoke else "."),
        "",
        f"- Machine: {machine()}.",
        "",
    ]
    if checkpoint is not None:
        lines += checkpoint_report.markdown(checkpoint, checkpoint_goals, smoke)
    if safetensors is not None:
        lines += safetensors_report.markdown(safetensors, safetensors_goals or [], smoke)
    if dcp is not None:
        lines += dcp_report.markdown(dcp, dcp_goals or [], smoke)
    if consolidate is not None:
        lines += consolidate_report.markdown(consolidate, consolidate_goals or [], smoke)
    if dcp_scale is not None:
        lines += dcp_scale_report.markdown(dcp_scale, dcp_scale_goals or [], smoke)
    if futures is not None:
        lines += futures_markdown(futures, goals, rounds)
    path.write_text("\n".join(lines))


def futures_markdown(data: dict, goals: List[dict], rounds: int) -> List[str]:
    samples, allocations, loads = data["samples"], data["allocations"], data["loads"]
    lines = [
        "## Future helpers",
        "",
        f"- Measured {data.get('date', 'at an unrecorded time')}; {rounds} interleaved rounds; 1-minute load "
        f"average at the start of each round: min {min(loads):.2f}, "
        f"median {statistics.median(loads):.2f}, max {max(loads):.2f}.",
        "- Figures: CPU time per operation (process CPU time, which leaves out the time the "
        "scheduler gives other processes), median over rounds; C++ by Google Benchmark, "
        "Python and TorchScript by `bench/python/timing.py`. A ratio is the median over rounds "
        "of that round's ratio. Allocations: calls to malloc, calloc and realloc per operation, "
        "counted by a malloc interposer in the C++ benchmark.",
        "",
        "### Goals",
        "",
        "| comparison | measured | goal | holds |",
        "| --- | --- | --- | --- |",
    ]
    for row in goals:
        verdict = "(information)" if row["informative"] else ("yes" if row["holds"] else "**no**")
        lines.append(f"| {row['goal']} | {row['shown']} | {row['bound']} | {verdict} |")
    missed = [row for row in goals if not row["holds"] and row["why"]]
    if missed:
        lines += ["", "Goals missed in this run, and why:", ""]
        lines += [f"- {row['goal']}: {row['shown']} against {row['bound']}. {row['why']}" for row in missed]
    lines += [
        "",
        "### Cases",
        "",
        "| suite | case | operation | ns per op (median) | min | max | allocations per op |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in CASES:
        values = samples[case.name]
        allocs = allocations.get(case.name)
        name = f"**{case.name}**" if case.ours else case.name
        lines.append(
            f"| {case.suite} | {name} | {case.what} | {statistics.median(values):,.0f} | "
            f"{min(values):,.0f} | {max(values):,.0f} | {'' if allocs is None else f'{allocs:g}'} |"
        )
    lines += ["", "Ours in bold. ![ns per operation by case](benchmarks.png)", ""]
    return lines


def write_plot(path: pathlib.Path, data: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [case.name for case in CASES]
    medians = [statistics.median(data["samples"][name]) for name in names]
    colors = ["tab:orange" if case.ours else "tab:gray" for case in CASES]
    figure, axes = plt.subplots(figsize=(9, 6.5))
    positions = range(len(names))[::-1]
    axes.barh(list(positions), medians, color=colors)
    axes.set_yticks(list(positions), [f"{c.suite}: {c.name}" for c in CASES], fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("CPU ns per operation (per link for chains), median over rounds; log scale")
    axes.set_title("torch_ext (orange) beside its anchors (gray)")
    for y, value in zip(positions, medians):
        axes.text(value, y, f" {value:,.0f}", va="center", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def with_goals(report: dict, name: str, part: Optional[dict], module: Any) -> Tuple[Optional[dict], List[dict]]:
    """A part of the report (measured now, or read back without its goals) and its goals, evaluated anew by its
    module and put in `report` under `name`; (None, []) for a part neither measured nor read."""
    if part is None:
        return None, []
    part = {key: value for key, value in part.items() if key != "goals"}
    goals = module.evaluate(part)
    report[name] = {**part, "goals": goals}
    return part, goals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpp-bench", type=pathlib.Path, help="the future_utils_bench binary: runs the future helpers' part")
    parser.add_argument("--checkpoint-bench", type=pathlib.Path,
                        help="the checkpoint_bench binary: runs the checkpoint part")
    parser.add_argument("--safetensors-bench", type=pathlib.Path,
                        help="the safetensors_bench binary: runs the safetensors part")
    parser.add_argument("--safetensors-rounds", type=int, default=3)
    parser.add_argument("--safetensors-mib", type=int, default=1024)
    parser.add_argument("--consolidate", action="store_true",
                        help="runs the part of DCP to safetensors consolidation (a 2-rank job: no binary)")
    parser.add_argument("--consolidate-rounds", type=int, default=3)
    parser.add_argument("--consolidate-mib", type=int, default=1024)
    parser.add_argument("--dcp-scale-bench", type=pathlib.Path,
                        help="the dcp_scale_bench binary: runs the part of sharded saves at scale")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs")
    parser.add_argument("--rounds", type=int, default=9, help="rounds of the future helpers' part")
    parser.add_argument("--checkpoint-rounds", type=int, default=5)
    parser.add_argument("--checkpoint-sizes", default="256,1024", help="MiB, comma-separated")
    parser.add_argument("--dcp", action="store_true", help="runs the DCP part (bench/python/dcp_bench.py)")
    parser.add_argument("--dcp-rounds", type=int, default=3)
    parser.add_argument("--dcp-mib", type=int, default=1024)
    parser.add_argument("--dcp-threads", type=int, default=1, help="thread_count of both DCP writers")
    parser.add_argument("--smoke", action="store_true", help="one short round: checks that every case runs")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--from-json", type=pathlib.Path,
                        help="a benchmarks.json: write the report from its figures instead of measuring")
    args = parser.parse_args()
    if args.cpp_bench is None and args.checkpoint_bench is None and args.safetensors_bench is None \
            and not args.dcp and not args.consolidate and args.dcp_scale_bench is None and args.from_json is None:
        parser.error("give --cpp-bench, --checkpoint-bench, --safetensors-bench, --dcp, --consolidate, "
                     "--dcp-scale-bench or several "
                     "(or --from-json)")
    rounds = 1 if args.smoke else args.rounds
    random.seed()
    report: dict = {}
    checkpoint, checkpoint_goals = None, []
    futures, goals = None, []
    dcp, dcp_goals = None, []
    # A part not measured now is taken from --from-json or, outside smoke
    # mode, from the report in --out, so that one part can be measured again
    # alone; each part states when it was measured.
    previous = args.from_json or (None if args.smoke else args.out / "benchmarks.json")
    measured = json.loads(previous.read_text()) if previous and previous.is_file() else {}
    if args.checkpoint_bench and not args.from_json:
        sizes = [16] if args.smoke else [int(mib) for mib in args.checkpoint_sizes.split(",")]
        checkpoint = checkpoint_report.run_rounds(
            args.checkpoint_bench, sizes, 1 if args.smoke else args.checkpoint_rounds, args.smoke)
    else:
        checkpoint = measured.get("checkpoint")
    if args.safetensors_bench and not args.from_json:
        safetensors = safetensors_report.run_rounds(
            args.safetensors_bench, 16 if args.smoke else args.safetensors_mib,
            1 if args.smoke else args.safetensors_rounds, args.smoke)
    else:
        safetensors = measured.get("safetensors")
    safetensors, safetensors_goals = with_goals(report, "safetensors", safetensors, safetensors_report)
    if args.dcp and not args.from_json:
        dcp = dcp_report.run(16 if args.smoke else args.dcp_mib, 1 if args.smoke else args.dcp_rounds,
                             args.dcp_threads, args.smoke)
    else:
        dcp = measured.get("dcp")
    dcp, dcp_goals = with_goals(report, "dcp", dcp, dcp_report)
    if args.consolidate and not args.from_json:
        consolidate = consolidate_report.run_rounds(
            8 if args.smoke else args.consolidate_mib, 1 if args.smoke else args.consolidate_rounds, args.smoke)
    else:
        consolidate = measured.get("consolidate")
    consolidate, consolidate_goals = with_goals(report, "consolidate", consolidate, consolidate_report)
    if args.dcp_scale_bench and not args.from_json:
        dcp_scale = dcp_scale_report.run(args.dcp_scale_bench, args.smoke)
    else:
        dcp_scale = measured.get("dcp_scale")
    dcp_scale, dcp_scale_goals = with_goals(report, "dcp_scale", dcp_scale, dcp_scale_report)
    if not (args.cpp_bench and not args.from_json) and "samples" in measured:
        futures = {key: measured[key] for key in ("samples", "allocations", "loads", "date") if key in measured}
        rounds = len(futures["loads"]) - 1
    checkpoint, checkpoint_goals = with_goals(report, "checkpoint", checkpoint, checkpoint_report)
    if args.cpp_bench and not args.from_json:
        futures = run_rounds(args.cpp_bench, rounds, args.smoke)
    if futures is not None:
        goals = evaluate(futures)
        report.update({**futures, "goals": goals})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.json").write_text(json.dumps(report, indent=1) + "\n")
    write_markdown(args.out / "benchmarks.md", futures, goals, rounds, checkpoint, checkpoint_goals, args.smoke,
                   safetensors, safetensors_goals, dcp, dcp_goals, consolidate, consolidate_goals,
                   dcp_scale, dcp_scale_goals)
    if not args.no_plot:
        if futures is not None:
            write_plot(args.out / "benchmarks.png", futures)
        if checkpoint is not None:
            checkpoint_report.write_plot(args.out / "benchmarks_checkpoint.png", checkpoint)
    for row in checkpoint_goals:
        shown = ", ".join(f"{mib} MiB: {value}" for mib, value in row["shown"].items())
        print(f"{'ok ' if row['holds'] else 'NO '} {row['goal']}: {shown} ({row['bound']})")
    for row in safetensors_goals + dcp_goals + consolidate_goals + dcp_scale_goals + goals:
        print(f"{'ok ' if row['holds'] else 'NO '} {row['goal']}: {row['shown']} ({row['bound']})")


if __name__ == "__main__":
    main()
