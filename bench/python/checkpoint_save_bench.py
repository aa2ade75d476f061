"""One round of the save benchmark at one size: the cases in the order given.

Each case saves the same state dict twice (the second save shows buffers
reused) while a training loop of small ops runs on the calling thread; the
same loop runs idle just before and just after, for the ratio. With each
window of the loop goes the part of it the loop spent on a CPU (the rest it
waited for one) and how busy the machine's CPUs were. Per save: the time the caller
was blocked in the call, the times until staged and until durable, the bytes
on disk, and the loop's step time during the save. Per case: peak resident
memory above the case's baseline during the saves, and between them.

Usage: checkpoint_save_bench.py --mib N --out FOLDER --cases a,b,... [--smoke]
Prints one JSON object: {"state": {...}, "cases": {name: {...}}}.
"""

from __future__ import annotations

import argparse
import gc
import json
import pathlib
import statistics
import sys
import time
from typing import List

import torch

import bench_state
import proc_stats
from checkpoint_savers import Saver, remove, savers

SAVES_PER_CASE = 2


class TrainingLoop:
    """A training step of a small MLP: small ops, as a Python training loop makes."""

    STEPS_PER_SAMPLE = 4

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3)
        self.x = torch.randn(16, 64, generator=generator)
        self.y = torch.randn(16, 8, generator=generator)

    def sample(self) -> float:
        """Wall seconds per step over a few steps."""
        start = time.perf_counter()
        for _ in range(self.STEPS_PER_SAMPLE):
            loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        return (time.perf_counter() - start) / self.STEPS_PER_SAMPLE

    def idle(self, seconds: float) -> dict:
        """The loop idle for `seconds`: as Window.close() says."""
        window = Window()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            window.samples.append(self.sample())
        return window.close()


class Window:
    """A stretch of the loop: its step times, the part of the time it was on
    a CPU (the rest it waited, for a CPU or the GIL), and how busy the
    machine's CPUs were."""

    def __init__(self) -> None:
        self.samples: List[float] = []
        self.wall = time.perf_counter()
        self.cpu = time.thread_time()
        self.jiffies = proc_stats.cpu_jiffies()

    def close(self) -> dict:
        wall = time.perf_counter() - self.wall
        return {
            "loop_step_s": statistics.median(self.samples) if self.samples else None,
            "loop_samples": len(self.samples),
            "loop_on_cpu": (time.thread_time() - self.cpu) / wall if self.samples else None,
            "machine_busy": proc_stats.busy_fraction(self.jiffies, proc_stats.cpu_jiffies()),
        }


def run_save(saver: Saver, folder: pathlib.Path, state: dict, loop: TrainingLoop, timeout_s: float) -> dict:
    start = time.perf_counter()
    window = Window()
    save = saver.start(folder, state)
    returned = time.perf_counter()
    deadline = returned + timeout_s
    while not save.poll():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{saver.name}: the save was not durable after {timeout_s} s")
        if saver.with_loop:
            window.samples.append(loop.sample())
        else:
            time.sleep(0.0002)
    # A save that finished before its call returned finished, for the caller, on return.
    return {
        "blocked_s": returned - start,
        "staged_s": max(save.staged_at, returned) - start,
        "durable_s": max(save.durable_at, returned) - start,
        "bytes": save.bytes_on_disk(),
        **window.close(),
    }


def run_case(saver: Saver, out: pathlib.Path, state: dict, loop: TrainingLoop, idle_s: float, timeout_s: float) -> dict:
    saver.open(out / f"{saver.name}_warm_up")
    try:
        gc.collect()
        idle = loop.idle(idle_s)
        proc_stats.release_free_memory()
        baseline = proc_stats.rss()
        proc_stats.reset_peak()
        saves, between = [], None
        for index in range(SAVES_PER_CASE):
            folder = out / f"{saver.name}_{index}"
            remove(folder)  # left by an interrupted run
            saves.append(run_save(saver, folder, state, loop, timeout_s))
            remove(folder)
            if index == 0:
                between = proc_stats.rss() - baseline
        peak = proc_stats.peak() - baseline
        # Idle once more after the saves: the faster of the two is the
        # reference, so that a disturbance of one idle window (a process of
        # the saver still starting, another program) makes no save look faster.
        idle = min(idle, loop.idle(idle_s), key=lambda window: window["loop_step_s"])
    finally:
        saver.close()
    return {"loop_idle_step_s": idle["loop_step_s"], "loop_idle_on_cpu": idle["loop_on_cpu"],
            "machine_idle_busy": idle["machine_busy"], "saves": saves, "rss_peak_over_baseline": peak,
            "rss_between_saves_over_baseline": between}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--cases", required=True, help="comma-separated, in the order to run")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()

    # The loop runs on one intra-op thread and leaves the other cores to the
    # save, as a trainer leaves cores to its data loaders. With OpenMP on
    # every core, any other thread that runs stalls the loop's thread team at
    # each parallel region: on a loaded 2-core machine a step of 0.2 ms took
    # 60 ms so, save or no save.
    torch.set_num_threads(1)
    state = bench_state.make_state(args.mib << 20)
    available = savers(bench_state.tensor_bytes(state))
    loop = TrainingLoop()
    loop.idle(0.05)  # warm up autograd and the allocator
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.cases.split(","):
        results[name] = run_case(
            available[name], args.out, state, loop, idle_s=0.05 if args.smoke else 0.5, timeout_s=600
        )
        print(f"  {name} done", file=sys.stderr)
    json.dump({"state": bench_state.describe(state), "cases": results}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
