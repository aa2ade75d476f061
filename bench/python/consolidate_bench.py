"""DCP to safetensors consolidation: ours (`torch_ext convert`) beside upstream's `consolidate_safetensors_files`.

    python consolidate_bench.py prepare DIR --mib 1024   # a 2-rank FSDP2 job saves DIR/dcp and DIR/hf_sharded
    python consolidate_bench.py case NAME DIR OUT        # one case, in this process: prints its JSON line

Each case runs in a process of its own, so that its peak RSS
(getrusage's ru_maxrss) is its own; its time is the operation's alone
(imports left out). The inputs are what each side consolidates from the
same job: ours the DCP checkpoint (FileSystemWriter), upstream's the
safetensors shards with DCP's offsets that its HuggingFaceStorageWriter
writes (save_distributed=True); both outputs hold the same tensors, byte
for byte (test/test_cli.py checks it).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent

CASES = ("baseline", "upstream", "upstream_fsync", "torch_ext")


def prepare(folder: pathlib.Path, mib: int) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:0", "--max-restarts", "0",
               "--monitor-interval", "0.1", str(HERE / "fsdp_checkpoint.py"), str(folder), "--mib", str(mib)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")


def fsync_folder(folder: pathlib.Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def run_case(name: str, folder: pathlib.Path, out: pathlib.Path) -> dict:
    import torch  # noqa: F401
    from torch.distributed.checkpoint._consolidate_hf_safetensors import consolidate_safetensors_files

    import torch_ext.cli

    start = time.perf_counter()
    if name.startswith("upstream"):
        out.mkdir()
        mapping = json.loads((folder / "mapping.json").read_text())
        consolidate_safetensors_files(str(folder / "hf_sharded"), str(out), mapping)
        if name == "upstream_fsync":
            fsync_folder(out)
    elif name == "torch_ext":
        status = torch_ext.cli.main(["convert", str(folder / "dcp"), str(out), "--to", "safetensors"])
        if status != 0:
            raise SystemExit(f"torch_ext convert exited {status}")
    seconds = time.perf_counter() - start
    return {"case": name, "seconds": seconds, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare_parser = commands.add_parser("prepare")
    prepare_parser.add_argument("folder", type=pathlib.Path)
    prepare_parser.add_argument("--mib", type=int, required=True)
    case_parser = commands.add_parser("case")
    case_parser.add_argument("name", choices=CASES)
    case_parser.add_argument("folder", type=pathlib.Path)
    case_parser.add_argument("out", type=pathlib.Path)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.folder, args.mib)
    else:
        print(json.dumps(run_case(args.name, args.folder, args.out)))


if __name__ == "__main__":
    main()
