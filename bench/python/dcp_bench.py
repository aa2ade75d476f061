"""DCP's standard format: torch_ext's StorageWriter and StorageReader against
upstream's, in interleaved rounds, in one process.

Each round runs every case once, in random order:
- saves of the state (bench_state.make_state) by dcp.save into a new folder,
  fsync'd: through upstream's FileSystemWriter, through torch_ext's (both
  with --threads), and a plain write of every tensor's bytes then fsync;
- loads by dcp.load into a state dict of the same layout, from a folder
  upstream's writer saved, through upstream's FileSystemReader and ours
  (verified, and not), page cache warm and cold;
- the whole state of a folder that 4 ranks saved (FSDP-style Shard(0)
  DTensors, dcp_sharded_save.py) in one process: torch_ext.load_dcp against
  dcp_to_torch_save + torch.load;
- dcp.async_save with each writer while a training loop runs on the
  calling thread: the loop's steps per second from the call's return to
  the save's end (stalls included) against idle.
What load_dcp and torch.load return is touched (every value summed) within
the timing; dcp.load copies every value into its target before it returns.
Cold: the folder's files are dropped from the page cache (posix_fadvise
DONTNEED, no root needed) and mincore() checks it; where it did not work
the cold cases are not run and the output says so.

Usage: dcp_bench.py --mib N --out FOLDER --rounds R [--threads T] [--smoke]
Prints one JSON object: {"state": {...}, "cold": bool, "threads": T,
"load_averages": [...], "rounds": [{case: figure}, ...]}; times in seconds,
loop speeds as steps per second during the save / idle.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import time
import warnings
from typing import Callable, Dict

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions

import bench_state
import torch_ext.dcp
from checkpoint_load_bench import drop_from_page_cache, resident_fraction, warm
from checkpoint_save_bench import TrainingLoop
from checkpoint_savers import PlainWrite

# DCP says so at each save and load without a process group, which is the case measured.
warnings.filterwarnings("ignore", message="torch.distributed is disabled")
HERE = pathlib.Path(__file__).resolve().parent
RANKS = 4
WRITERS = {"upstream": dcp.FileSystemWriter, "torch_ext": torch_ext.dcp.FileSystemWriter}
READERS = {
    "upstream": dcp.FileSystemReader,
    "torch_ext": torch_ext.dcp.FileSystemReader,
    "torch_ext_unverified": lambda path: torch_ext.dcp.FileSystemReader(path, verify=False),
}


def data_files(folder: pathlib.Path):
    return [path for path in folder.iterdir() if path.is_file()]


def drop(folder: pathlib.Path) -> bool:
    """Drops the folder's files from the page cache; whether that worked."""
    for path in data_files(folder):
        drop_from_page_cache(path)
    return all(resident_fraction(path) < 0.01 for path in data_files(folder) if path.stat().st_size)


def warm_folder(folder: pathlib.Path) -> None:
    for path in data_files(folder):
        warm(path)


def timed(run: Callable[[], object]) -> float:
    """Seconds of run(), with every value of what it returns (a state) touched."""
    gc.collect()
    start = time.perf_counter()
    result = run()
    if result is not None:
        bench_state.touch(result)
    elapsed = time.perf_counter() - start
    del result
    gc.collect()
    return elapsed


def save_cases(state: dict, work: pathlib.Path, threads: int) -> Dict[str, Callable[[], float]]:
    def saved(save: Callable[[pathlib.Path], None], name: str) -> Callable[[], float]:
        def case() -> float:
            folder = work / f"save_{name}"
            shutil.rmtree(folder, ignore_errors=True)
            elapsed = timed(lambda: save(folder))
            shutil.rmtree(folder)
            return elapsed

        return case

    def dcp_save(name: str) -> Callable[[pathlib.Path], None]:
        def save(folder: pathlib.Path) -> None:
            dcp.save(state, storage_writer=WRITERS[name](folder, thread_count=threads))

        return save

    def plain_write(folder: pathlib.Path) -> None:
        PlainWrite().start(folder, state)

    return {
        "save_upstream": saved(dcp_save("upstream"), "upstream"),
        "save_torch_ext": saved(dcp_save("torch_ext"), "torch_ext"),
        "save_plain_write": saved(plain_write, "plain_write"),
    }


def load_cases(folder: pathlib.Path, target: dict, cold: bool) -> Dict[str, Callable[[], float]]:
    def case(name: str, cache: str) -> Callable[[], float]:
        # Both readers copy every value into the target before they return: nothing to touch.
        def load() -> None:
            dcp.load(target, storage_reader=READERS[name](folder))

        def run() -> float:
            if cache == "cold":
                drop(folder)
            else:
                warm_folder(folder)
            return timed(load)

        return run

    caches = ("warm", "cold") if cold else ("warm",)
    return {f"load_{name}_{cache}": case(name, cache) for name in READERS for cache in caches}


def whole_cases(folder: pathlib.Path, work: pathlib.Path) -> Dict[str, Callable[[], float]]:
    out = work / "whole.pt"

    def upstream() -> dict:
        dcp_to_torch_save(folder, out)
        return torch.load(out, weights_only=False)

    def ours() -> dict:
        return torch_ext.dcp.load_dcp(folder)

    def warm_then(load: Callable[[], dict]) -> Callable[[], float]:
        def run() -> float:
            warm_folder(folder)
            elapsed = timed(load)
            out.unlink(missing_ok=True)
            return elapsed

        return run

    return {"whole_dcp_to_torch_save": warm_then(upstream), "whole_load_dcp": warm_then(ours)}


def loop_rate(loop: TrainingLoop, until: Callable[[], bool]) -> float:
    """Loop samples per second until `until()` (one at least), over the
    whole stretch: time the loop could not run (waiting for the GIL or a
    CPU) counts."""
    start, samples = time.perf_counter(), 0
    while samples == 0 or not until():
        loop.sample()
        samples += 1
    return samples / (time.perf_counter() - start)


def async_cases(state: dict, work: pathlib.Path, threads: int, loop: TrainingLoop, idle_s: float):
    def async_save(name: str) -> dict:
        folder = work / f"async_{name}"
        shutil.rmtree(folder, ignore_errors=True)
        idle_end = time.perf_counter() + idle_s
        idle = loop_rate(loop, lambda: time.perf_counter() >= idle_end)
        # The same staging for both: a copy on the calling thread, before the call returns.
        stager = DefaultStager(StagingOptions(False, False, False, False))
        start = time.perf_counter()
        future = dcp.async_save(state, storage_writer=WRITERS[name](folder, thread_count=threads), async_stager=stager)
        returned = time.perf_counter()
        during = loop_rate(loop, future.done)
        future.result()
        durable = time.perf_counter()
        stager.close()
        shutil.rmtree(folder)
        return {"blocked_s": returned - start, "durable_s": durable - start, "loop_speed": during / idle}

    return {"async_upstream": lambda: async_save("upstream"), "async_torch_ext": lambda: async_save("torch_ext")}


def sharded_save(mib: int, folder: pathlib.Path) -> None:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(RANKS),
        "--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:0", "--max-restarts", "0",
        str(HERE / "dcp_sharded_save.py"), "--mib", str(mib), "--out", str(folder),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=HERE, env=env)
    if result.returncode != 0:
        raise SystemExit(f"the {RANKS}-rank save failed:\n{result.stdout}\n{result.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="thread_count of both writers")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()

    # One intra-op thread, for the reason bench/python/checkpoint_save_bench.py gives.
    torch.set_num_threads(1)
    work = args.out / "dcp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    state = bench_state.make_state(args.mib << 20)
    loaded = work / "loaded"
    dcp.save(state, storage_writer=dcp.FileSystemWriter(loaded, thread_count=args.threads))
    sharded = work / "sharded"
    sharded_save(args.mib, sharded)
    target = bench_state.make_state(args.mib << 20, seed=1)
    cold = drop(loaded)
    loop = TrainingLoop()
    cases = {
        **save_cases(state, work, args.threads),
        **load_cases(loaded, target, cold),
        **whole_cases(sharded, work),
        **async_cases(state, work, args.threads, loop, 0.05 if args.smoke else 0.5),
    }
    rounds, load_averages = [], []
    for _ in range(args.rounds):
        load_averages.append(os.getloadavg()[0])
        names = list(cases)
        random.shuffle(names)
        rounds.append({name: cases[name]() for name in names})
    load_averages.append(os.getloadavg()[0])
    shutil.rmtree(work)
    json.dump({"state": bench_state.describe(state), "cold": cold, "threads": args.threads,
               "load_averages": load_averages, "rounds": rounds}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
