"""torch_ext.dcp.save_sharded under torchrun (2 gloo ranks on loopback):
DTensors saved from their local shards, read back by upstream's dcp.load
and by torch_ext.dcp.load_sharded into DTensors of another layout, and
upstream's dcp.save of them read by load_sharded."""

import json
import textwrap

from jobs import torchrun

TIMEOUT_S = 300

RANK = textwrap.dedent("""
    import json, os, sys, torch, torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor
    import torch_ext.dcp

    folder, out = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    torch.manual_seed(0)
    full = {"w": torch.randn(7, 8), "c": torch.randn(6, 5, dtype=torch.float64), "b": torch.randn(8)}

    def state(layout):
        sd = {name: distribute_tensor(full[name], mesh, [placement]) for name, placement in layout.items()}
        return {"model": sd, "step": 5}

    saved = {"w": Shard(0), "c": Shard(1), "b": Replicate()}
    torch_ext.dcp.save_sharded(state(saved), folder)
    dcp.save(state(saved), checkpoint_id=folder + "_upstream")  # what torch_ext reads too
    dist.barrier()
    other = {"w": Shard(1), "c": Shard(0), "b": Replicate()}
    results = {}
    for reader in ("upstream", "torch_ext", "torch_ext of upstream's"):
        target = state(other)
        with torch.no_grad():
            for tensor in target["model"].values():
                tensor.requires_grad_()  # as parameters are: loaded in place all the same
                tensor.to_local().fill_(-1)
        if reader == "upstream":
            dcp.load(target, checkpoint_id=folder)
        elif reader == "torch_ext":
            torch_ext.dcp.load_sharded(folder, target)
        else:
            torch_ext.dcp.load_sharded(folder + "_upstream", target)
        results[reader] = {name: torch.equal(t.full_tensor(), full[name]) for name, t in target["model"].items()}
    with open(os.path.join(out, f"rank_{rank}.json"), "w") as f:
        json.dump(results, f)
    dist.destroy_process_group()
""")


def test_dtensors_saved_by_two_ranks_load_into_another_layout(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    folder, out = tmp_path / "ckpt", tmp_path / "out"
    out.mkdir()
    torchrun(script, 2, folder, out, timeout=TIMEOUT_S)
    expected = {"w": True, "c": True, "b": True}
    for rank in range(2):
        results = json.loads((out / f"rank_{rank}.json").read_text())
        readers = ("upstream", "torch_ext", "torch_ext of upstream's")
        assert results == {reader: expected for reader in readers}, f"rank {rank}"
    assert sorted(p.name for p in folder.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
