"""One round of the load benchmark at one size: every case, page cache warm and cold.

The checkpoint is written once by torch.save (fsync'd) and every reader
loads that file; each load is timed with every value touched (the sum of
every tensor). Cold: the file is dropped from the page cache first with
posix_fadvise(POSIX_FADV_DONTNEED), and mincore() checks that it was; where
it was not, the cold cases are not run and the output says so.

Usage: checkpoint_load_bench.py --mib N --out FOLDER --repeats R [--smoke]
Prints one JSON object: {"partial_bytes": n, "partial_keys": n, "cold": bool,
"cases": {name: {"warm": [s, ...], "cold": [s, ...]}}}, one figure per repeat,
the cases shuffled in each.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import mmap
import os
import pathlib
import random
import sys
import time
import warnings
from typing import Callable, Dict

import numpy
import torch
from torch.distributed.checkpoint._experimental.checkpoint_reader import CheckpointReader
from torch.distributed.checkpoint._experimental.types import RankInfo

import bench_state
import torch_ext

# Upstream's partial read makes tensors over the bytes it read; said once per process, about its code.
warnings.filterwarnings("ignore", message="The given buffer is not writable")
from checkpoint_savers import torch_save_durably


def resident_fraction(file: pathlib.Path) -> float:
    """The part of `file` in the page cache, by mincore()."""
    size = file.stat().st_size
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    page = mmap.PAGESIZE
    pages = (size + page - 1) // page
    vector = (ctypes.c_ubyte * pages)()
    with open(file, "rb") as handle, mmap.mmap(handle.fileno(), size, prot=mmap.PROT_READ) as mapped:
        view = numpy.frombuffer(mapped, dtype=numpy.uint8)
        try:
            if libc.mincore(ctypes.c_void_p(view.ctypes.data), ctypes.c_size_t(size), vector) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
        finally:
            del view
    return sum(byte & 1 for byte in vector) / pages


def drop_from_page_cache(file: pathlib.Path) -> None:
    fd = os.open(file, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm(file: pathlib.Path) -> None:
    with open(file, "rb") as handle:
        while handle.read(16 << 20):
            pass


def loaders(folder: pathlib.Path, file: pathlib.Path, state: dict, keys) -> Dict[str, Callable[[], object]]:
    reader = CheckpointReader(RankInfo(global_world_size=1, global_rank=0))
    template = {"model": {key.split(".", 1)[1]: None for key in keys}}
    return {
        "torch_load": lambda: torch.load(file, weights_only=True),
        "torch_load_mmap": lambda: torch.load(file, weights_only=True, mmap=True),
        "upstream_reader": lambda: reader.read(str(folder))[0],
        "upstream_reader_partial": lambda: reader.read(str(folder), {"model": dict(template["model"])})[0],
        "torch_ext_load": lambda: torch_ext.load(file),
        "torch_ext_load_unverified": lambda: torch_ext.load(file, verify=False),
        "torch_ext_load_partial": lambda: torch_ext.load(file, keys=keys),
    }


def timed(load: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    loaded = load()
    bench_state.touch(loaded)
    elapsed = time.perf_counter() - start
    del loaded
    gc.collect()  # unmaps what a mapped load mapped, so that the file can be dropped
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()

    # One intra-op thread, for the reason bench/python/checkpoint_save_bench.py gives.
    torch.set_num_threads(1)
    state = bench_state.make_state(args.mib << 20)
    keys = bench_state.partial_keys(state)
    partial_bytes = sum(state["model"][key.split(".", 1)[1]].nbytes for key in keys)
    folder = args.out / "load"
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "checkpoint_0.pt"
    torch_save_durably(state, file)
    cases = loaders(folder, file, state, keys)
    del state
    gc.collect()

    drop_from_page_cache(file)
    cold = resident_fraction(file) < 0.01
    results = {name: {"warm": [], "cold": []} for name in cases}
    names = list(cases)
    for _ in range(args.repeats):
        random.shuffle(names)
        for name in names:
            warm(file)
            results[name]["warm"].append(timed(cases[name]))
            if cold:
                drop_from_page_cache(file)
                results[name]["cold"].append(timed(cases[name]))
    file.unlink()
    json.dump({"partial_bytes": partial_bytes, "partial_keys": len(keys), "cold": cold, "cases": results}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
