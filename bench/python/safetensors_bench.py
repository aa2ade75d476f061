"""One round of the safetensors benchmark at one size: saves and loads, side by side.

The state is the checkpoint benchmarks' (bench_state.py: a model's float32
parameters and their AdamW state), flattened into dotted keys, as a
safetensors file holds it. Saves, each into a new file: the package's
`safetensors.torch.save_file` (written, not fsync'd: its own durability),
the same followed by fsync of the file and its folder, `torch_ext.save(...,
format="safetensors")` (durable), and the C++ `write_safetensors_file`
(bench/cpp/safetensors_bench save). Loads of one file of ours (the package
reads it as its own), page cache warm, every value touched (the sum of every
tensor): `safetensors.torch.load_file`, ours verified and unverified, in
Python and C++ (safetensors_bench load). Wall-clock seconds; the cases
shuffled in each repeat.

Usage: safetensors_bench.py --mib N --out FOLDER --cpp-bench BINARY --repeats R
Prints one JSON object: {"bytes": n, "tensors": n, "saves": {case: [s, ...]},
"loads": {case: [s, ...]}}.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import random
import subprocess
import sys
import time
from typing import Callable, Dict

import safetensors.torch
import torch

import bench_state
import torch_ext
import torch_ext.safetensors as st


def flat_state(total_bytes: int) -> Dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        ".".join(path): torch.tensor(100.0) if not shape else torch.randn(shape, generator=generator)
        for path, shape in bench_state.layout(total_bytes)
    }


def fsync_file_and_folder(file: pathlib.Path) -> None:
    for path, flags in ((file, os.O_RDONLY), (file.parent, os.O_RDONLY | os.O_DIRECTORY)):
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def savers(state: dict) -> Dict[str, Callable[[pathlib.Path], None]]:
    def package_durable(file: pathlib.Path) -> None:
        safetensors.torch.save_file(state, file)
        fsync_file_and_folder(file)

    return {
        "safetensors_save_file": lambda file: safetensors.torch.save_file(state, file),
        "safetensors_save_file_fsync": package_durable,
        "torch_ext_save": lambda file: torch_ext.save(state, file, format="safetensors"),
    }


def loaders(file: pathlib.Path) -> Dict[str, Callable[[], object]]:
    return {
        "safetensors_load_file": lambda: safetensors.torch.load_file(file),
        "torch_ext_load": lambda: st.load_file(file),
        "torch_ext_load_unverified": lambda: st.load_file(file, verify=False),
    }


def warm(file: pathlib.Path) -> None:
    with open(file, "rb") as handle:
        while handle.read(16 << 20):
            pass


def timed(call: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    loaded = call()
    if loaded is not None:
        bench_state.touch(loaded)
    elapsed = time.perf_counter() - start
    del loaded
    gc.collect()  # unmaps what a load mapped
    return elapsed


def run_cpp(binary: str, *arguments: str) -> dict:
    result = subprocess.run([binary, *arguments], capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"{binary} {' '.join(arguments)} failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--cpp-bench", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    # One intra-op thread for the touch, as the checkpoint benchmarks run.
    torch.set_num_threads(1)
    folder = args.out / "safetensors"
    folder.mkdir(parents=True, exist_ok=True)
    layout = folder / "layout.txt"
    layout.write_text(bench_state.layout_lines(args.mib << 20))
    state = flat_state(args.mib << 20)
    saves = {name: [] for name in [*savers(state), "torch_ext_cpp"]}
    names = list(saves)
    for _ in range(args.repeats):
        random.shuffle(names)
        for name in names:
            file = folder / f"{name}.safetensors"
            if name == "torch_ext_cpp":
                saves[name] += run_cpp(args.cpp_bench, "save", "--layout", str(layout), "--file", str(file))["save_s"]
            else:
                saves[name].append(timed(lambda: savers(state)[name](file)))
            file.unlink()

    file = folder / "load.safetensors"
    torch_ext.save(state, file, format="safetensors")
    total, tensors = bench_state.tensor_bytes(state), len(state)
    del state
    gc.collect()
    cases = loaders(file)
    loads = {name: [] for name in [*cases, "torch_ext_cpp_load", "torch_ext_cpp_load_unverified"]}
    names = list(loads)
    for _ in range(args.repeats):
        random.shuffle(names)
        for name in names:
            warm(file)
            if name.startswith("torch_ext_cpp"):
                verify = "0" if name.endswith("unverified") else "1"
                loads[name] += run_cpp(args.cpp_bench, "load", "--file", str(file), "--verify", verify)["load_s"]
            else:
                loads[name].append(timed(cases[name]))
    file.unlink()
    layout.unlink()
    json.dump({"bytes": total, "tensors": tensors, "saves": saves, "loads": loads}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
