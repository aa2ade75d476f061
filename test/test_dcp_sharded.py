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
    assert_bitwise_equal({str(k): v for k, v in target["optim"]["state"].items()}, {str(k): v for k, v in expected["optim"]["state"].items()})
    assert target["step"] == expected["step"]

    whole = upstream_full_state(folder, tmp_path)
    assert_bitwise_equal(torch_ext.load(folder), whole)
    assert_bitwise_equal(dict(whole["model"]), dict(expected["model"]))

