"""One rank of test_dcp_storage.py's FSDP2 jobs (run by torch.distributed.run,
gloo on the CPU): `python dcp_storage_ranks.py ROOT [RESHARD_FROM]`.

Trains an FSDP2 (fully_shard) model with AdamW for a step and saves its
state dict (Shard(0) DTensors, unevenly split) into ROOT three times:
`upstream_<n>` by upstream's FileSystemWriter, `ours_<n>` by torch_ext's
under dcp.save (two data files per rank), `ours_async_<n>` under
dcp.async_save, n being the world size; rank 0 saves the full tensors as
`reference_<n>.pt`. Then dcp.load reads each folder into a fresh model's
state dict through the other side's reader (and ours through ours), and,
with RESHARD_FROM, the folders that RESHARD_FROM ranks saved through
torch_ext's reader. Every load must give the saved full tensors bitwise;
a mismatch raises, naming the folder and the key.
"""

import os
import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.utils._pytree import tree_flatten_with_path, tree_map

import torch_ext.dcp


def trained(seed: int):
    """An FSDP2 model and its AdamW after one step: rows of 7 and 5 split
    unevenly over 2 and 4 ranks."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 7), torch.nn.ReLU(), torch.nn.Linear(7, 5))
    for layer in (model[0], model[2]):
        fully_shard(layer)
    fully_shard(model)
    optim = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(3, 6)).sum().backward()
    optim.step()
    return model, optim


def state_of(model, optim):
    model_state, optim_state = get_state_dict(model, optim)
    return {"model": model_state, "optim": optim_state}


def full(state):
    return tree_map(lambda value: value.full_tensor() if isinstance(value, DTensor) else value, state)


def assert_loaded(state, reference, what):
    loaded, _ = tree_flatten_with_path(full(state))
    expected, _ = tree_flatten_with_path(reference)
    assert [path for path, _ in loaded] == [path for path, _ in expected], what
    for (path, value), (_, saved) in zip(loaded, expected):
        if isinstance(saved, torch.Tensor):
            same = value.dtype == saved.dtype and torch.equal(value, saved)
        else:
            same = value == saved
        assert same, f"{what}: {path} is {value!r}, saved {saved!r}"


def load(folder, reader_class, reference):
    target = state_of(*trained(seed=1))
    dcp.load(target, storage_reader=reader_class(folder))
    assert_loaded(target, reference, f"{reader_class.__module__}.FileSystemReader of {folder}")


def main():
    root = sys.argv[1]
    reshard_from = int(sys.argv[2]) if len(sys.argv) > 2 else None
    dist.init_process_group("gloo")
    n = dist.get_world_size()
    state = state_of(*trained(seed=0))
    reference = full(state)
    if dist.get_rank() == 0:
        torch.save(reference, os.path.join(root, f"reference_{n}.pt"))

    folder = {name: os.path.join(root, f"{name}_{n}") for name in ("upstream", "ours", "ours_async")}
    dcp.save(state, storage_writer=dcp.FileSystemWriter(folder["upstream"]))
    dcp.save(state, storage_writer=torch_ext.dcp.FileSystemWriter(folder["ours"], thread_count=2))
    dcp.async_save(state, storage_writer=torch_ext.dcp.FileSystemWriter(folder["ours_async"])).result()

    load(folder["upstream"], torch_ext.dcp.FileSystemReader, reference)
    load(folder["ours"], dcp.FileSystemReader, reference)
    load(folder["ours_async"], dcp.FileSystemReader, reference)
    load(folder["ours"], torch_ext.dcp.FileSystemReader, reference)
    if reshard_from is not None:
        saved = torch.load(os.path.join(root, f"reference_{reshard_from}.pt"), weights_only=True)
        for name in ("upstream", "ours"):
            load(os.path.join(root, f"{name}_{reshard_from}"), torch_ext.dcp.FileSystemReader, saved)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
