"""C++ sharded saves (torch_ext::dcp::save_sharded, 4 ranks as threads of
test/cpp/dcp_sharded_tool agreeing through a TCPStore) read by upstream's
dcp.load and dcp_to_torch_save, and by torch_ext.load."""

import subprocess

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader

import torch_ext

from dcp_states import assert_bitwise_equal, training_state, upstream_full_state

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


def sharded_save(cpp_build, tmp_path, state, world_size):
    torch.save(state, tmp_path / "full.pt")
    folder = tmp_path / "sharded"
    tool = str(cpp_build / "test" / "cpp" / "dcp_sharded_tool")
    subprocess.run([tool, "save", str(tmp_path / "full.pt"), str(folder), str(world_size)], check=True, timeout=120)
    return folder


def test_upstream_reads_a_four_rank_cpp_save_bitwise(tmp_path, cpp_build):
    expected = training_state()
    folder = sharded_save(cpp_build, tmp_path, expected, world_size=4)

    # Every rank wrote its rows of a weight; replicated values, rank 0.
    storage = FileSystemReader(folder).read_metadata().storage_data
    weight_files = sorted(info.relative_path for index, info in storage.items() if index.fqn == "model.0.weight")
    assert weight_files == [f"__{rank}_0.distcp" for rank in range(4)]
    assert {info.relative_path for index, info in storage.items() if index.fqn == "step"} == {"__0_0.distcp"}

    target = training_state(seed=1)
    dcp.load(target, storage_reader=FileSystemReader(folder))
    assert_bitwise_equal(dict(target["model"]), dict(expected["model"]))
    assert_bitwise_equal(target["extra"], expected["extra"])
    assert_bitwise_equal(target["optim"]["param_groups"], expected["optim"]["param_groups"])
    # dcp.load keeps the target's keys: the optimizer's int keys were str() in the file.
    assert_bitwise_equal(
        {str(k): v for k, v in target["optim"]["state"].items()},
        {str(k): v for k, v in expected["optim"]["state"].items()},
    )
    assert target["step"] == expected["step"]

    whole = upstream_full_state(folder, tmp_path)
    assert_bitwise_equal(torch_ext.load(folder), whole)
    assert_bitwise_equal(dict(whole["model"]), dict(expected["model"]))


def test_local_shards_from_python_in_one_process(tmp_path):
    whole = torch.randn(5, 4)
    parts = [(whole[:2].clone(), (0, 0)), (whole[2:, :3].clone(), (2, 0)), (whole[2:, 3:].clone(), (2, 3))]
    folder = tmp_path / "ckpt"
    torch_ext.dcp.save_sharded({"w": torch_ext.dcp.local_shards(parts, whole.shape), "step": 3}, folder)
    assert_bitwise_equal(torch_ext.load(folder), {"w": whole, "step": 3})

    into = torch.full((3, 4), -1.0)
    torch_ext.dcp.load_sharded(folder, {"w": torch_ext.dcp.local_shards([(into, (1, 0))], (5, 4))})
    assert torch.equal(into, whole[1:4])
    parameter = torch.nn.Parameter(torch.zeros(5, 4))  # a leaf that requires grad, written in place
    torch_ext.dcp.load_sharded(folder, {"w": parameter})
    assert torch.equal(parameter.detach(), whole) and parameter.requires_grad

    with pytest.raises(ValueError, match="entry 'w' has parts .* hold 8 elements of its 20"):
        torch_ext.dcp.save_sharded({"w": torch_ext.dcp.local_shards(parts[:1], whole.shape)}, tmp_path / "gap")
    with pytest.raises(ValueError, match="entry 'w' is a Float tensor of global shape \\[5, 4\\] in the checkpoint"):
        torch_ext.dcp.load_sharded(folder, {"w": torch.zeros(4, 4)})
    with pytest.raises(ValueError, match="lies outside the global shape"):
        torch_ext.dcp.local_shards([(torch.zeros(2, 2), (4, 0))], (5, 4))
    with pytest.raises(TypeError, match="LocalShards"):
        torch_ext.save({"w": torch_ext.dcp.local_shards(parts, whole.shape)}, tmp_path / "file.pt")
