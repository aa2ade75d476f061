"""Saves the benchmark's state as the ranks of an FSDP run save it: each rank
holds its rows (torch.chunk's, as Shard(0) splits) of every tensor as a
DTensor, and dcp.save writes them with upstream's FileSystemWriter. Run by
torch.distributed.run (gloo on the CPU); the values are each rank's own.

Usage: torchrun --nproc-per-node N dcp_sharded_save.py --mib M --out FOLDER
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Shard

import bench_state


def local_rows(rows: int, rank: int, world_size: int) -> int:
    chunk = math.ceil(rows / world_size)
    return max(0, min(chunk, rows - rank * chunk))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world_size,))
    generator = torch.Generator().manual_seed(rank)
    state: dict = {}
    for path, shape in bench_state.layout(args.mib << 20):
        parent = state
        for key in path[:-1]:
            parent = parent.setdefault(key, {})
        if not shape:
            parent[path[-1]] = torch.tensor(100.0)
            continue
        local = torch.randn((local_rows(shape[0], rank, world_size), *shape[1:]), generator=generator)
        parent[path[-1]] = DTensor.from_local(
            local, mesh, [Shard(0)], run_check=False, shape=torch.Size(shape),
            stride=torch.empty(shape, device="meta").stride())
    state["step"] = 100
    dcp.save(state, storage_writer=dcp.FileSystemWriter(args.out))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
