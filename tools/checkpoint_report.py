"""The checkpoint part of `make bench`: saves side by side, loads, staging budgets, CRC32.

Each round runs, for each size in random order, three parts in random order:
the Python save cases in one process, shuffled
(bench/python/checkpoint_save_bench.py), the C++ save
(bench/cpp/checkpoint_bench save) and the loads, shuffled
(bench/python/checkpoint_load_bench.py); then the CRC32 throughput
(checkpoint_bench crc). Times are wall-clock, what a training run waits. A
save figure is the median over rounds of the second save of its case (the
steady state: buffers reused, processes started); a ratio is the median over
rounds of that round's ratio, so that a disk or a load that changes between
rounds affects both sides of it alike.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
from typing import Callable, Dict, List, NamedTuple, Optional

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "python"
MIB = 1 << 20
SLACK = 64 * MIB  # the memory goals' allowance beyond the staged bytes

sys.path.insert(0, str(BENCH))
import bench_state  # noqa: E402  (bench/python, for the C++ benchmark's layout)

from report_tables import spread


class Case(NamedTuple):
    name: str
    ours: bool
    what: str


SAVE_CASES = [
    Case("torch_save", False, "`torch.save` + fsync on the calling thread: the synchronous save"),
    Case("torch_save_thread", False, "`torch.save` + fsync on a thread"),
    Case("upstream_process", False, "upstream `make_async_checkpointer` (writer process; we fsync after its write)"),
    Case("dcp_async_save", False, "`torch.distributed.checkpoint.async_save` (thread, no process group)"),
    Case("torch_ext", True, "`torch_ext.AsyncCheckpointer` from Python (writer at nice 10, the default)"),
    Case("torch_ext_writer_nice_0", True, "the same with `writer_nice=0`: the writer shares the CPU evenly"),
    Case("torch_ext_alone", True, "the same with `writer_nice=0` and no loop: the save's own speed"),
    Case("torch_ext_cpp", True, "`torch_ext::AsyncCheckpointer` from C++"),
    Case("torch_ext_save", True, "`torch_ext.save` on the calling thread"),
    Case("plain_write", False, "the disk: each tensor's bytes written in turn, then fsync"),
    Case("dd", False, "the disk: `dd bs=1M conv=fsync` of as many bytes"),
]
PEERS = ["torch_save_thread", "upstream_process", "dcp_async_save"]
BUDGETS = {"1/8": 1 / 8, "1/4": 1 / 4, "1/2": 1 / 2, "1": 1.0}
PYTHON_SAVE_CASES = [case.name for case in SAVE_CASES if case.name != "torch_ext_cpp"] + [
    f"torch_ext_budget_{label}" for label in BUDGETS
]
LOAD_CASES = [
    Case("torch_load", False, "`torch.load(weights_only=True)`"),
    Case("torch_load_mmap", False, "`torch.load(weights_only=True, mmap=True)`"),
    Case("upstream_reader", False, "upstream `CheckpointReader.read` (torch.load)"),
    Case("upstream_reader_partial", False, "upstream `CheckpointReader.read` of the 1% (a template)"),
    Case("torch_ext_load", True, "`torch_ext.load`: mapped, every CRC32 verified"),
    Case("torch_ext_load_unverified", True, "`torch_ext.load(verify=False)`: mapped"),
    Case("torch_ext_load_partial", True, "`torch_ext.load(keys=...)` of the 1%, verified"),
]


def run_json(command: List[str], timeout_s: float) -> dict:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=BENCH)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_size(mib: int, binary: pathlib.Path, work: pathlib.Path, smoke: bool) -> dict:
    python = sys.executable
    layout = work / f"layout_{mib}.txt"
    layout.write_text(bench_state.layout_lines(mib * MIB))
    cases = list(PYTHON_SAVE_CASES)
    random.shuffle(cases)
    smoke_flag = ["--smoke"] if smoke else []
    parts = {
        "saves": lambda: run_json(
            [python, "checkpoint_save_bench.py", "--mib", str(mib), "--out", str(work), "--cases", ",".join(cases)]
            + smoke_flag, 3600),
        "cpp": lambda: run_json(
            [str(binary), "save", "--layout", str(layout), "--out", str(work), "--idle-s", "0.05" if smoke else "0.5"],
            1800),
        "loads": lambda: run_json(
            [python, "checkpoint_load_bench.py", "--mib", str(mib), "--out", str(work),
             "--repeats", "1" if smoke else "3"] + smoke_flag, 3600),
    }
    order = list(parts)
    random.shuffle(order)
    results = {part: parts[part]() for part in order}
    saves = results["saves"]
    cpp = results["cpp"]
    saves["cases"]["torch_ext_cpp"] = cpp
    return {"state": saves["state"], "cases": saves["cases"], "loads": results["loads"]}


def run_rounds(binary: pathlib.Path, sizes: List[int], rounds: int, smoke: bool) -> dict:
    binary = binary.resolve()  # the parts run in bench/python
    data = {"sizes": sizes, "rounds": []}
    with tempfile.TemporaryDirectory(prefix="torch_ext_bench.", dir=os.environ.get("TORCH_EXT_BENCH_DIR")) as tmp:
        work = pathlib.Path(tmp)
        for index in range(rounds):
            load = os.getloadavg()[0]
            order = list(sizes)
            random.shuffle(order)
            per_size = {}
            for mib in order:
                per_size[str(mib)] = run_size(mib, binary, work, smoke)
                print(f"checkpoint round {index + 1}/{rounds}: {mib} MiB done", file=sys.stderr)
            crc = run_json([str(binary), "crc", "--mib", "16" if smoke else "256", "--repeats", "1" if smoke else "5"],
                           600)
            data["rounds"].append({"load_average": load, "sizes": per_size, "crc": crc})
        data["load_average_end"] = os.getloadavg()[0]
    data["date"] = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    return data


# Accessors into one round at one size.
def steady(size: dict, case: str) -> dict:
    return size["cases"][case]["saves"][-1]


def loop_speed(size: dict, case: str) -> float:
    """Steps per second during the save / idle."""
    return size["cases"][case]["loop_idle_step_s"] / steady(size, case)["loop_step_s"]


def state_bytes(size: dict) -> int:
    return size["state"]["bytes"]


def best_peer(size: dict) -> str:
    return max(PEERS, key=lambda peer: loop_speed(size, peer))


def load_s(size: dict, case: str, cache: str = "warm") -> float:
    return statistics.median(size["loads"]["cases"][case][cache])


def budget_overshoot(size: dict) -> float:
    """The most peak RSS over baseline beyond the budget, over the budgets, in MiB."""
    return max(
        (size["cases"][f"torch_ext_budget_{label}"]["rss_peak_over_baseline"] - int(state_bytes(size) * fraction)) / MIB
        for label, fraction in BUDGETS.items()
    )


class Goal(NamedTuple):
    text: str
    value: Callable[[dict], float]
    kind: str  # "max", "min", "above", "info"
    bound: float
    unit: str = "x"
    largest_only: bool = False  # judged at the largest size only
    why: Optional[Callable[[dict, int], str]] = None  # the measured reason, when missed


def median_over_rounds(data: dict, mib: int, value: Callable[[dict], float]) -> float:
    return statistics.median(value(r["sizes"][str(mib)]) for r in data["rounds"])


def figure(data: dict, mib: int, value: Callable[[dict], float]) -> List[float]:
    """`value` of each round at `mib`."""
    return [value(r["sizes"][str(mib)]) for r in data["rounds"]]


def ms(values: List[float]) -> str:
    """Seconds as `median ms (min-max)`."""
    return spread(values, 1e3)


def load_averages(data: dict) -> str:
    loads = [r["load_average"] for r in data["rounds"]]
    return f"{min(loads):.1f} to {max(loads):.1f}"


def why_blocked(case: str, reference: str) -> Callable[[dict, int], str]:
    def why(data: dict, mib: int) -> str:
        blocked = figure(data, mib, lambda s: steady(s, case)["blocked_s"])
        sync = figure(data, mib, lambda s: sync_save_s(s, reference))
        return (
            f"At {size_label(mib)} the call took {spread(blocked, 1e3, 1)} ms against {ms(sync)} ms for the "
            "synchronous save. It copies no tensor data: it "
            + ("converts the Python state dict to C++ values (one walk over its entries) and " if case == "torch_ext"
               else "")
            + "posts the save to the staging thread. Where the fastest round is far below the median, the rest is "
            f"the scheduler: the machine's load average was {load_averages(data)} on 2 cores."
        )

    return why


def why_loop(case: str) -> Callable[[dict, int], str]:
    def why(data: dict, mib: int) -> str:
        idle = figure(data, mib, lambda s: s["cases"][case]["loop_idle_step_s"])
        during = figure(data, mib, lambda s: steady(s, case)["loop_step_s"])
        staged = figure(data, mib, lambda s: steady(s, case)["staged_s"])
        durable = figure(data, mib, lambda s: steady(s, case)["durable_s"])
        on_cpu_idle = figure(data, mib, lambda s: s["cases"][case]["loop_idle_on_cpu"])
        on_cpu = figure(data, mib, lambda s: steady(s, case)["loop_on_cpu"])
        busy = figure(data, mib, lambda s: steady(s, case)["machine_busy"])
        text = (
            f"At {size_label(mib)} a loop step took {spread(idle, 1e6)} us idle and {spread(during, 1e6)} us during "
            f"the save, which was staged after {ms(staged)} ms and durable after {ms(durable)} ms. The loop thread "
            f"was on a CPU {spread(on_cpu_idle, 100)} % of the time idle and {spread(on_cpu, 100)} % during the "
            f"save, with the machine's 2 CPUs {spread(busy, 100)} % busy (our threads hold no GIL, so the rest of "
            "the time it waited for a CPU). The staging copy runs "
            "at the loop's priority (the caller waits for it), the writer at nice 10, the kernel's writeback of the "
            f"written pages at its own; the machine's load average from other work was {load_averages(data)}."
        )
        if case == "torch_ext":
            nice_0 = figure(data, mib, lambda s: loop_speed(s, "torch_ext_writer_nice_0"))
            text += f" With the writer at nice 0 the loop ran at {spread(nice_0, 1, 2)}x."
        return text

    return why


def why_peer(data: dict, mib: int) -> str:
    ours = figure(data, mib, lambda s: loop_speed(s, "torch_ext"))
    best = [best_peer(r["sizes"][str(mib)]) for r in data["rounds"]]
    peer = max(set(best), key=best.count)
    speed = figure(data, mib, lambda s: loop_speed(s, peer))
    peer_durable = figure(data, mib, lambda s: steady(s, peer)["durable_s"])
    durable = figure(data, mib, lambda s: steady(s, "torch_ext")["durable_s"])
    return (
        f"At {size_label(mib)} the best peer was most often `{peer}`: the loop ran at {spread(speed, 1, 2)}x under "
        f"it and {spread(ours, 1, 2)}x under ours. Its save took {ms(peer_durable)} ms to be durable, ours "
        f"{ms(durable)} ms: its work spread over a longer time."
    )


def why_throughput(case: str) -> Callable[[dict, int], str]:
    def why(data: dict, mib: int) -> str:
        if case == "torch_ext_cpp":
            durable = figure(data, mib, lambda s: s["cases"][case]["alone_durable_s"])
            plain = figure(data, mib, lambda s: s["cases"][case]["plain_write_s"])
            text = f"At {size_label(mib)} the save took {ms(durable)} ms, the plain write {ms(plain)} ms."
        else:
            staged = figure(data, mib, lambda s: steady(s, case)["staged_s"])
            durable = figure(data, mib, lambda s: steady(s, case)["durable_s"])
            plain = figure(data, mib, lambda s: steady(s, "plain_write")["durable_s"])
            text = (
                f"At {size_label(mib)} the save was staged after {ms(staged)} ms and durable after {ms(durable)} ms, "
                f"the plain write took {ms(plain)} ms."
            )
        crc = statistics.median(r["crc"]["crc32_gbps"] for r in data["rounds"])
        state = data["rounds"][0]["sizes"][str(mib)]["state"]["bytes"]
        return text + (
            f" Beyond the plain write's work, the writer computes a CRC32 of every record ({state / 1e9 * 1e3 / crc:.0f}"
            f" ms at the {crc:.1f} GB/s measured below), on the same thread as its write() calls; the disk's speed "
            f"itself varies between rounds (plain write {ms(figure(data, mib, lambda s: steady(s, 'plain_write')['durable_s']))}"
            " ms)."
        )

    return why


def why_memory(case: str) -> Callable[[dict, int], str]:
    def why(data: dict, mib: int) -> str:
        peak = figure(data, mib, lambda s: s["cases"][case]["rss_peak_over_baseline"])
        between = figure(data, mib, lambda s: s["cases"][case]["rss_between_saves_over_baseline"])
        state = data["rounds"][0]["sizes"][str(mib)]["state"]["bytes"]
        return (
            f"At {size_label(mib)} the peak was {spread(peak, 1 / MIB)} MiB over the baseline and "
            f"{spread(between, 1 / MIB)} MiB between saves, for {state / MIB:.0f} MiB of tensors."
        )

    return why


def why_budget(data: dict, mib: int) -> str:
    parts = []
    for label, fraction in BUDGETS.items():
        peak = figure(data, mib, lambda s: s["cases"][f"torch_ext_budget_{label}"]["rss_peak_over_baseline"])
        budget = int(data["rounds"][0]["sizes"][str(mib)]["state"]["bytes"] * fraction)
        parts.append(f"{spread(peak, 1 / MIB)} MiB for a budget of {budget / MIB:.0f} MiB")
    return f"At {size_label(mib)} the peaks over the baseline were " + "; ".join(parts) + "."


def why_load(data: dict, mib: int) -> str:
    rounds = data["rounds"]
    crc = statistics.median(r["crc"]["crc32_gbps"] for r in rounds)
    read = statistics.median(r["crc"]["read_gbps"] for r in rounds)
    times = {case.name: ms(figure(data, mib, lambda s, n=case.name: load_s(s, n))) for case in LOAD_CASES}
    return (
        f"At {size_label(mib)}, warm, every value summed: `torch.load` {times['torch_load']} ms, "
        f"`torch.load(mmap=True)` {times['torch_load_mmap']} ms, ours verified {times['torch_ext_load']} ms, "
        f"unverified {times['torch_ext_load_unverified']} ms, 1% partial {times['torch_ext_load_partial']} ms. "
        f"Verifying reads every byte once more, at the CRC32's {crc:.1f} GB/s (a plain read runs at {read:.1f} "
        "GB/s here)."
    )


def sync_save_s(size: dict, reference: str) -> float:
    if reference == "write_checkpoint":
        return size["cases"]["torch_ext_cpp"]["sync_save_s"]
    return steady(size, reference)["durable_s"]


def goals() -> List[Goal]:
    return [
        Goal("Caller blocked per save / synchronous `torch.save` + fsync (Python)",
             lambda s: steady(s, "torch_ext")["blocked_s"] / sync_save_s(s, "torch_save"), "max", 0.01,
             why=why_blocked("torch_ext", "torch_save")),
        Goal("Caller blocked per save / synchronous `write_checkpoint` (C++)",
             lambda s: steady(s, "torch_ext_cpp")["blocked_s"] / sync_save_s(s, "write_checkpoint"),
             "max", 0.01, why=why_blocked("torch_ext_cpp", "write_checkpoint")),
        Goal("Training loop speed during a background save / idle (Python loop)",
             lambda s: loop_speed(s, "torch_ext"), "min", 0.9, why=why_loop("torch_ext")),
        Goal("Training loop speed during a background save / idle (C++ loop)",
             lambda s: loop_speed(s, "torch_ext_cpp"), "min", 0.9, why=why_loop("torch_ext_cpp")),
        Goal("Training loop speed under ours / under the best peer (Python loop)",
             lambda s: loop_speed(s, "torch_ext") / loop_speed(s, best_peer(s)), "above", 1.0, why=why_peer),
        Goal("Full save (staged and durable) throughput / plain write + fsync (Python, alone)",
             lambda s: steady(s, "plain_write")["durable_s"] / steady(s, "torch_ext_alone")["durable_s"], "min", 0.9,
             why=why_throughput("torch_ext_alone")),
        Goal("Full save throughput / plain write + fsync (C++ alone, its own plain write)",
             lambda s: s["cases"]["torch_ext_cpp"]["plain_write_s"] / s["cases"]["torch_ext_cpp"]["alone_durable_s"],
             "min", 0.9, why=why_throughput("torch_ext_cpp")),
        Goal("Full save throughput / `dd conv=fsync` (Python, alone; the gap to dd)",
             lambda s: steady(s, "dd")["durable_s"] / steady(s, "torch_ext_alone")["durable_s"], "info", 0),
        Goal("Full save throughput with the loop running, writer at nice 10 / plain write + fsync",
             lambda s: steady(s, "plain_write")["durable_s"] / steady(s, "torch_ext")["durable_s"], "info", 0),
        Goal("Plain write + fsync / `dd conv=fsync`",
             lambda s: steady(s, "dd")["durable_s"] / steady(s, "plain_write")["durable_s"], "info", 0),
        Goal("Peak RSS over baseline across two saves / (1.1 x state + 64 MiB) (Python)",
             lambda s: s["cases"]["torch_ext"]["rss_peak_over_baseline"] / (1.1 * state_bytes(s) + SLACK), "max", 1.0,
             why=why_memory("torch_ext")),
        Goal("Peak RSS over baseline across two saves / (1.1 x state + 64 MiB) (C++)",
             lambda s: s["cases"]["torch_ext_cpp"]["rss_peak_over_baseline"] / (1.1 * state_bytes(s) + SLACK),
             "max", 1.0, why=why_memory("torch_ext_cpp")),
        Goal("`max_staging_bytes`: peak RSS over baseline - budget, worst of 1/8 to 1x (MiB)",
             budget_overshoot, "max", 64, unit=" MiB", why=why_budget),
        Goal("Load, warm: verified / `torch.load(mmap=True)`",
             lambda s: load_s(s, "torch_ext_load") / load_s(s, "torch_load_mmap"), "max", 1.5, largest_only=True,
             why=why_load),
        Goal("Load, warm: `torch.load` / verified",
             lambda s: load_s(s, "torch_load") / load_s(s, "torch_ext_load"), "min", 2.0, largest_only=True,
             why=why_load),
        Goal("Load, warm: unverified / `torch.load(mmap=True)`",
             lambda s: load_s(s, "torch_ext_load_unverified") / load_s(s, "torch_load_mmap"), "max", 1.1,
             largest_only=True, why=why_load),
        Goal("Load, warm: `torch.load` / 1% partial",
             lambda s: load_s(s, "torch_load") / load_s(s, "torch_ext_load_partial"), "min", 20.0, largest_only=True,
             why=why_load),
        Goal("Load, warm: verified / unverified (the cost of verification)",
             lambda s: load_s(s, "torch_ext_load") / load_s(s, "torch_ext_load_unverified"), "info", 0),
    ]


def holds(goal: Goal, value: float) -> bool:
    if goal.kind == "max":
        return value <= goal.bound
    if goal.kind == "min":
        return value >= goal.bound
    if goal.kind == "above":
        return value > goal.bound
    return True


def evaluate(data: dict) -> List[dict]:
    sizes = data["sizes"]
    rows = []
    for goal in goals():
        values = {mib: median_over_rounds(data, mib, goal.value) for mib in sizes}
        judged = [sizes[-1]] if goal.largest_only else sizes
        missed = [mib for mib in judged if not holds(goal, values[mib])]
        sign = {"max": "<=", "min": ">=", "above": ">", "info": ""}[goal.kind]
        bound = "-" if goal.kind == "info" else f"{sign} {goal.bound:g}{goal.unit}"
        rows.append({
            "goal": goal.text,
            "values": {str(mib): value for mib, value in values.items()},
            "shown": {str(mib): f"{value:.3g}{goal.unit}" for mib, value in values.items()},
            "bound": bound,
            "judged_at": judged,
            "holds": not missed,
            "informative": goal.kind == "info",
            "why": " ".join(goal.why(data, mib) for mib in missed) if missed and goal.why else "",
        })
    return rows



def size_label(mib: int) -> str:
    return f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"


def markdown(data: dict, rows: List[dict], smoke: bool) -> List[str]:
    sizes = data["sizes"]
    rounds = data["rounds"]
    first = rounds[0]["sizes"]
    loads = [r["load_average"] for r in rounds] + [data["load_average_end"]]
    lines = [
        "## Checkpoints",
        "",
        f"- State dict: a transformer-like model's parameters and its AdamW state (`exp_avg`, `exp_avg_sq`, "
        f"`step`) in DCP's layout, float32: "
        + "; ".join(
            f"{size_label(mib)}: {first[str(mib)]['state']['tensors']} tensors "
            f"({first[str(mib)]['state']['parameters']} parameters), {first[str(mib)]['state']['bytes']:,} bytes"
            for mib in sizes)
        + ".",
        f"- Measured {data.get('date', 'at an unrecorded time')}; {len(rounds)} rounds; sizes, the three parts (Python saves, C++ save, loads) and the cases within each "
        "shuffled per round. 1-minute load average at the start of each round: "
        f"min {min(loads):.2f}, median {statistics.median(loads):.2f}, max {max(loads):.2f}."
        + (" Smoke mode: these figures mean nothing." if smoke else ""),
        "- Wall-clock times. Each save case saves twice; figures are the second save (buffers reused, "
        "processes started): median over rounds (min-max). A ratio is the median over rounds of that round's "
        "ratio. Blocked: time in the save call. Staged: until the caller may change its tensors. Durable: until "
        "the file is fsync'd. Loop: a training step of a small MLP on the calling thread, idle step time / step "
        "time during the save (1.00 = unslowed). Peak RSS: VmHWM over the case's baseline across both saves "
        "(the main process only); between: RSS after the first save.",
        "",
        "### Goals",
        "",
        "| comparison | " + " | ".join(size_label(mib) for mib in sizes) + " | goal | holds |",
        "| --- | " + " | ".join("---" for _ in sizes) + " | --- | --- |",
    ]
    for row in rows:
        if row["informative"]:
            verdict = "(information)"
        else:
            at = "" if len(row["judged_at"]) == len(sizes) else f" (at {size_label(row['judged_at'][0])})"
            verdict = ("yes" if row["holds"] else "**no**") + at
        values = " | ".join(row["shown"][str(mib)] for mib in sizes)
        lines.append(f"| {row['goal']} | {values} | {row['bound']} | {verdict} |")
    missed = [row for row in rows if not row["holds"]]
    if missed:
        lines += ["", "Goals missed in this run, and why:", ""]
        lines += [f"- {row['goal']}: {row['why']}" for row in missed]

    for mib in sizes:
        per_round = [r["sizes"][str(mib)] for r in rounds]
        lines += [
            "",
            f"### Saves, {size_label(mib)}",
            "",
            "| case | what | blocked ms | staged ms | durable ms | MiB/s to durable | MiB on disk | loop speed "
            "during save | peak RSS MiB | RSS between saves MiB |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for case in SAVE_CASES:
            lines.append(save_row(case.name, f"**{case.name}**" if case.ours else case.name, case.what, per_round))
        lines += [
            "",
            "Where the loop's time went: the part of it the loop thread was on a CPU (the rest it waited, for a CPU "
            "or, under a peer that runs Python on a thread, for the GIL), and how busy the machine's 2 CPUs were, "
            "in the idle window and during the save.",
            "",
            "| case | loop on a CPU, idle | during the save | machine busy, idle | during the save |",
            "| --- | --- | --- | --- | --- |",
        ]
        for case in SAVE_CASES:
            if steady(per_round[0], case.name).get("loop_on_cpu") is not None:
                lines.append(cpu_row(case.name, f"**{case.name}**" if case.ours else case.name, per_round))
        lines += [
            "",
            f"`max_staging_bytes` at {size_label(mib)} (`torch_ext.AsyncCheckpointer` from Python): staged is what "
            "a caller that waits for `stage_future` before changing its tensors is blocked.",
            "",
            "| budget | what | blocked ms | staged ms | durable ms | MiB/s to durable | MiB on disk | loop speed "
            "during save | peak RSS MiB | RSS between saves MiB |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for label, fraction in BUDGETS.items():
            budget = int(state_bytes(per_round[0]) * fraction)
            lines.append(save_row(f"torch_ext_budget_{label}", f"{label} of the state",
                                  f"`max_staging_bytes={budget:,}` ({budget / MIB:.0f} MiB)", per_round))

        load = per_round[0]["loads"]
        cold = load["cold"]
        lines += [
            "",
            f"### Loads, {size_label(mib)}",
            "",
            f"The file written by `torch.save`, every value touched (the sum of every tensor). The 1% partial "
            f"load names {load['partial_keys']} entries, {load['partial_bytes'] / MIB:.1f} MiB. "
            + ("Cold: dropped from the page cache by `posix_fadvise(POSIX_FADV_DONTNEED)` before each load "
               "(mincore() checked)." if cold else
               "Cold loads not run: `posix_fadvise(POSIX_FADV_DONTNEED)` did not drop the file here."),
            "",
            "| case | what | warm ms | x `torch.load` (warm) | cold ms |",
            "| --- | --- | --- | --- | --- |",
        ]
        for case in LOAD_CASES:
            warm = [load_s(s, case.name) for s in per_round]
            ratio = statistics.median(load_s(s, "torch_load") / load_s(s, case.name) for s in per_round)
            colds = [load_s(s, case.name, "cold") for s in per_round] if cold else []
            name = f"**{case.name}**" if case.ours else case.name
            lines.append(f"| {name} | {case.what} | {spread(warm, 1e3, 1)} | {ratio:.2f} | "
                         f"{spread(colds, 1e3, 1) if colds else '-'} |")

    crc = [r["crc"] for r in rounds]
    lines += [
        "",
        "### CRC32",
        "",
        f"ISA-L `crc32_gzip_refl` (what our files carry and `torch_ext.load` verifies) over "
        f"{crc[0]['bytes'] / MIB:.0f} MiB in memory, beside memcpy and a plain read of the same buffer, GB/s: "
        f"one thread {spread([c['crc32_gbps'] for c in crc], 1, 1)}, two threads "
        f"{spread([c['crc32_two_threads_gbps'] for c in crc], 1, 1)}; memcpy "
        f"{spread([c['memcpy_gbps'] for c in crc], 1, 1)}; read {spread([c['read_gbps'] for c in crc], 1, 1)}.",
        "",
        "Ours in bold. ![saves, staging budgets and loads](benchmarks_checkpoint.png)",
        "",
    ]
    return lines


def save_row(case: str, name: str, what: str, per_round: List[dict]) -> str:
    saves = [steady(s, case) for s in per_round]
    cases = [s["cases"][case] for s in per_round]
    speeds = [loop_speed(s, case) for s in per_round if steady(s, case)["loop_step_s"]]
    rate = [save["bytes"] / MIB / save["durable_s"] for save in saves]
    return (
        f"| {name} | {what} | {spread([s['blocked_s'] for s in saves], 1e3, 1)} | "
        f"{spread([s['staged_s'] for s in saves], 1e3)} | {spread([s['durable_s'] for s in saves], 1e3)} | "
        f"{spread(rate)} | {statistics.median(s['bytes'] for s in saves) / MIB:,.1f} | "
        f"{spread(speeds, 1, 2) if speeds else '- (loop stopped)'} | "
        f"{spread([c['rss_peak_over_baseline'] for c in cases], 1 / MIB)} | "
        f"{spread([c['rss_between_saves_over_baseline'] for c in cases], 1 / MIB)} |"
    )


def cpu_row(case: str, name: str, per_round: List[dict]) -> str:
    def percent(values: List[float]) -> str:
        return spread(values, 100) + " %"

    cases = [s["cases"][case] for s in per_round]
    saves = [steady(s, case) for s in per_round]
    return (
        f"| {name} | {percent([c['loop_idle_on_cpu'] for c in cases])} | {percent([s['loop_on_cpu'] for s in saves])} | "
        f"{percent([c['machine_idle_busy'] for c in cases])} | {percent([s['machine_busy'] for s in saves])} |"
    )


def write_plot(path: pathlib.Path, data: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mib = data["sizes"][-1]
    per_round = [r["sizes"][str(mib)] for r in data["rounds"]]
    figure, axes = plt.subplots(2, 2, figsize=(13, 9))

    names = [case.name for case in SAVE_CASES]
    colors = ["tab:orange" if case.ours else "tab:gray" for case in SAVE_CASES]
    positions = list(range(len(names)))[::-1]
    for field, alpha, label in (("durable_s", 0.35, "durable"), ("staged_s", 0.7, "staged"),
                                ("blocked_s", 1.0, "blocked")):
        values = [statistics.median(steady(s, name)[field] for s in per_round) for name in names]
        axes[0][0].barh(positions, values, color=colors, alpha=alpha, label=label)
    axes[0][0].set_yticks(positions, names, fontsize=8)
    axes[0][0].set_xlabel("seconds from the save call (light: durable, mid: staged, dark: blocked)")
    axes[0][0].set_title(f"One save of {size_label(mib)}, median over rounds")

    asynchronous = [name for name in names if steady(per_round[0], name)["loop_step_s"]]
    speeds = [statistics.median(loop_speed(s, name) for s in per_round) for name in asynchronous]
    axes[0][1].bar(range(len(asynchronous)), speeds,
                   color=["tab:orange" if name.startswith("torch_ext") else "tab:gray" for name in asynchronous])
    axes[0][1].axhline(0.9, color="tab:red", linestyle="--", linewidth=1, label="goal 0.9x")
    axes[0][1].set_xticks(range(len(asynchronous)), asynchronous, rotation=20, fontsize=8)
    axes[0][1].set_ylabel("loop speed during the save / idle")
    axes[0][1].set_title("Training loop during a background save")
    axes[0][1].legend(fontsize=8)

    fractions = list(BUDGETS.values())
    for field, label in (("staged_s", "staged (caller may change tensors)"), ("durable_s", "durable")):
        axes[1][0].plot(fractions, [statistics.median(steady(s, f"torch_ext_budget_{b}")[field] for s in per_round)
                                    for b in BUDGETS], marker="o", label=label)
    for field, label, style in (("staged_s", "no budget: staged", ":"), ("durable_s", "no budget: durable", "--")):
        axes[1][0].axhline(statistics.median(steady(s, "torch_ext")[field] for s in per_round), linestyle=style,
                           color="tab:gray", linewidth=1, label=label)
    peaks = axes[1][0].twinx()
    peaks.plot(fractions, [statistics.median(s["cases"][f"torch_ext_budget_{b}"]["rss_peak_over_baseline"] / MIB
                                             for s in per_round) for b in BUDGETS],
               marker="s", color="tab:green", label="peak RSS over baseline")
    peaks.plot(fractions, [f * state_bytes(per_round[0]) / MIB + 64 for f in fractions], color="tab:green",
               linestyle="--", linewidth=1, label="budget + 64 MiB")
    peaks.set_ylabel("MiB")
    axes[1][0].set_xscale("log", base=2)
    axes[1][0].set_xticks(fractions, list(BUDGETS))
    axes[1][0].set_xlabel("max_staging_bytes, as a fraction of the state")
    axes[1][0].set_ylabel("seconds from the save call")
    axes[1][0].set_title(f"Staging budget, {size_label(mib)}")
    handles = axes[1][0].get_legend_handles_labels()
    more = peaks.get_legend_handles_labels()
    axes[1][0].legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="upper right")

    load_names = [case.name for case in LOAD_CASES]
    x = range(len(load_names))
    cold = per_round[0]["loads"]["cold"]
    axes[1][1].bar([i - 0.2 for i in x], [statistics.median(load_s(s, n) for s in per_round) for n in load_names],
                   width=0.4, label="warm", color=["tab:orange" if c.ours else "tab:gray" for c in LOAD_CASES])
    if cold:
        axes[1][1].bar([i + 0.2 for i in x],
                       [statistics.median(load_s(s, n, "cold") for s in per_round) for n in load_names],
                       width=0.4, label="cold", color="none",
                       edgecolor=["tab:orange" if c.ours else "tab:gray" for c in LOAD_CASES], hatch="//")
    axes[1][1].set_yscale("log")
    axes[1][1].set_xticks(list(x), load_names, rotation=25, fontsize=7, ha="right")
    axes[1][1].set_ylabel("seconds, every value touched (log)")
    axes[1][1].set_title(f"Loads, {size_label(mib)} (solid: warm, hatched: cold)")
    figure.suptitle("torch_ext (orange) beside its peers (gray)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
