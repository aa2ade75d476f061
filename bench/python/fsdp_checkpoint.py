"""One rank of a CPU job (gloo) under torch.distributed.run that saves an FSDP2 model two ways.

    python -m torch.distributed.run --nproc-per-node 2 fsdp_checkpoint.py OUT --mib 16

OUT/dcp: ``dcp.save`` with FileSystemWriter (DCP's standard format), each
rank writing its shards. OUT/hf_sharded: ``dcp.save`` with upstream's
HuggingFaceStorageWriter(save_distributed=True), each rank writing its
shards as safetensors with DCP's offsets, which upstream's
``consolidate_safetensors_files`` turns into whole tensors. OUT/mapping.json:
each tensor's output file index for it (all 1: one file).

The model: Linear layers of float32 and bfloat16 (the last of uneven rows,
so that FSDP2 pads its shards), made on the meta device and sharded before
their memory exists, so that each rank holds only its shards. Values come
from a seed per rank.
"""

import argparse
import json
import os
import sys
import warnings

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint.hf_storage import HuggingFaceStorageWriter
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard


def model_of(mib: int) -> nn.Module:
    # Square float32 layers of about 1/8 of the size each, then two small ones.
    width = max(8, int((mib * 2**20 / 8 / 4) ** 0.5))
    layers = [nn.Linear(width, width) for _ in range(8)]
    layers.append(nn.Linear(width, 33).to(torch.bfloat16))
    layers.append(nn.Linear(33, 7, bias=False))
    return nn.Sequential(*layers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--mib", type=int, default=4)
    args = parser.parse_args()

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    with torch.device("meta"):
        model = model_of(args.mib)
    for layer in model:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(1234 + rank)
    with torch.no_grad():
        for parameter in model.parameters():
            local = parameter.to_local()
            local.copy_(torch.randn(local.shape, generator=generator).to(local.dtype))

    state = model.state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # upstream's notes on the writers' options
        dcp.save(state, storage_writer=FileSystemWriter(os.path.join(args.out, "dcp")))
        dcp.save(state, storage_writer=HuggingFaceStorageWriter(os.path.join(args.out, "hf_sharded"),
                                                                save_distributed=True))
    if rank == 0:
        with open(os.path.join(args.out, "mapping.json"), "w") as f:
            json.dump(dict.fromkeys(state, 1), f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    # Every file is written and the group destroyed. A rank's interpreter teardown aborted now and then
    # here ("terminate called without an active exception": a std::thread still joinable when static
    # destructors ran; twice in some 80 runs, with its files whole): end without it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
