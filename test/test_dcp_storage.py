"""torch_ext.dcp.FileSystemWriter and FileSystemReader under dcp.save,
dcp.async_save and dcp.load, with upstream's planners and upstream's
FileSystemWriter and FileSystemReader on the other side: in this process
(one rank), and in FSDP2 jobs of 2 and 4 ranks (dcp_storage_ranks.py)."""

import pathlib
import pickle

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
from torch.utils._pytree import tree_flatten_with_path

import bounded
from jobs import torchrun
import torch_ext.dcp
from dcp_states import (
    Payload,
    assert_bitwise_equal,
    flip_bit,
    record_payloads,
    training_state,
    upstream_full_state,
    upstream_save,
)

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")

HERE = pathlib.Path(__file__).resolve().parent
RANKS_TIMEOUT_S = 180


def load_through(reader, seed: int = 1) -> dict:
    """dcp.load into a training state of other values, as `reader` reads it."""
    target = training_state(seed)
    dcp.load(target, storage_reader=reader)
    return target


def file_names(folder: pathlib.Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


@pytest.mark.parametrize(("thread_count", "compress"), [(1, False), (4, False), (2, True)])
def test_dcp_load_through_our_reader_gives_what_upstreams_gives(tmp_path, thread_count, compress):
    folder = tmp_path / "ckpt"
    upstream_save(training_state(), folder, thread_count, compress)
    ours = load_through(torch_ext.dcp.FileSystemReader(folder))
    assert_bitwise_equal(ours, load_through(dcp.FileSystemReader(folder)))
    assert_bitwise_equal(dict(ours["model"]), upstream_full_state(folder, tmp_path)["model"])


def test_our_reader_converts_to_the_targets_dtype_as_upstreams_does(tmp_path):
    folder = tmp_path / "ckpt"
    dcp.save({"w": torch.randn(4, 3), "rows": torch.randn(5, 2)}, storage_writer=dcp.FileSystemWriter(folder))

    def load(reader):
        target = {"w": torch.zeros(4, 3, dtype=torch.bfloat16), "rows": torch.zeros(5, 2, dtype=torch.float64)}
        dcp.load(target, storage_reader=reader)
        return target

    assert_bitwise_equal(load(torch_ext.dcp.FileSystemReader(folder)), load(dcp.FileSystemReader(folder)))


@pytest.mark.parametrize("thread_count", [1, 3])
@pytest.mark.parametrize("save", ["save", "async_save"])
def test_upstream_reads_what_our_writer_saves(tmp_path, thread_count, save):
    state = training_state()
    folder = tmp_path / "ckpt"
    writer = torch_ext.dcp.FileSystemWriter(folder, thread_count=thread_count)
    if save == "save":
        metadata = dcp.save(state, storage_writer=writer)
    else:
        metadata = bounded.wait(dcp.async_save(state, storage_writer=writer), "dcp.async_save")
    reference = tmp_path / "reference"
    upstream_save(state, reference, thread_count)

    # Upstream's layout: the same files, each item in the same file.
    assert file_names(folder) == file_names(reference) == [".metadata"] + [f"__0_{i}.distcp" for i in range(thread_count)]
    ours, theirs = dcp.FileSystemReader(folder).read_metadata(), dcp.FileSystemReader(reference).read_metadata()
    assert ours.state_dict_metadata == theirs.state_dict_metadata
    assert ours.planner_data == theirs.planner_data
    assert {index: info.relative_path for index, info in ours.storage_data.items()} == {
        index: info.relative_path for index, info in theirs.storage_data.items()
    }
    assert ours.version == theirs.version
    assert pathlib.Path(ours.storage_meta.checkpoint_id) == folder
    # dcp.save returns the metadata it committed, as with upstream's writer.
    assert metadata.storage_data == ours.storage_data

    # Read by upstream's FileSystemReader, dcp_to_torch_save and our reader as upstream's own save.
    expected = load_through(dcp.FileSystemReader(reference))
    assert_bitwise_equal(load_through(dcp.FileSystemReader(folder)), expected)
    assert_bitwise_equal(load_through(torch_ext.dcp.FileSystemReader(folder)), expected)
    assert_bitwise_equal(upstream_full_state(folder, tmp_path), upstream_full_state(reference, tmp_path))


def test_our_writer_saves_over_a_checkpoint(tmp_path):
    folder, reference = tmp_path / "ckpt", tmp_path / "reference"
    upstream_save(training_state(seed=0), folder, thread_count=4)
    dcp.save(training_state(seed=1), storage_writer=torch_ext.dcp.FileSystemWriter(folder, thread_count=2))
    upstream_save(training_state(seed=1), reference, thread_count=2)
    expected = load_through(dcp.FileSystemReader(reference), seed=2)
    assert_bitwise_equal(load_through(dcp.FileSystemReader(folder), seed=2), expected)
    assert_bitwise_equal(load_through(torch_ext.dcp.FileSystemReader(folder), seed=2), expected)


def test_a_save_over_a_checkpoint_that_fails_leaves_no_commit(tmp_path):
    folder = tmp_path / "ckpt"
    upstream_save(training_state(seed=0), folder, thread_count=2)
    # Where the second data file goes, a folder: that file cannot be put in place.
    (folder / "__0_1.distcp").unlink()
    (folder / "__0_1.distcp").mkdir()
    with pytest.raises(CheckpointException, match="__0_1.distcp"):
        dcp.save(training_state(seed=1), storage_writer=torch_ext.dcp.FileSystemWriter(folder, thread_count=2))
    # Neither the old commit over the new data, nor a new one.
    assert not (folder / ".metadata").exists()
    with pytest.raises(CheckpointException, match=r"\.metadata"):
        load_through(torch_ext.dcp.FileSystemReader(folder))


def test_our_writer_refuses_what_it_cannot_commit(tmp_path):
    with pytest.raises(ValueError, match=r"thread_count in \[1, 256\], got 0"):
        torch_ext.dcp.FileSystemWriter(tmp_path / "ckpt", thread_count=0)
    folder = tmp_path / "ckpt"
    with pytest.raises(ValueError, match="use_collectives=False"):
        dcp.save({"w": torch.ones(2)}, storage_writer=torch_ext.dcp.FileSystemWriter(folder), use_collectives=False)
    assert not (folder / ".metadata").exists()


def test_a_hostile_metadata_is_refused_by_our_reader_and_runs_nothing(tmp_path):
    folder = tmp_path / "ckpt"
    upstream_save(training_state(), folder)
    marker = tmp_path / "ran"
    (folder / ".metadata").write_bytes(pickle.dumps(Payload(marker), protocol=4))
    with pytest.raises(RuntimeError, match="names the global 'posix.system'"):
        torch_ext.dcp.FileSystemReader(folder).read_metadata()
    with pytest.raises(CheckpointException, match="names the global 'posix.system'"):
        load_through(torch_ext.dcp.FileSystemReader(folder))
    assert not marker.exists()


def test_a_flipped_bit_is_caught_by_our_reader_naming_the_file_and_key(tmp_path):
    folder = tmp_path / "ckpt"
    upstream_save(training_state(), folder, thread_count=2)
    metadata = dcp.FileSystemReader(folder).read_metadata()
    expected = load_through(torch_ext.dcp.FileSystemReader(folder))
    for fqn in ("model.2.weight", "optim.param_groups.0.betas"):
        (info,) = [info for index, info in metadata.storage_data.items() if index.fqn == fqn]
        data = folder / info.relative_path
        item = data.read_bytes()[info.offset : info.offset + info.length]
        start, size = max(record_payloads(item), key=lambda record: record[1])
        flip_bit(data, info.offset + start + size // 2, bit=2)
        with pytest.raises(CheckpointException) as error:
            load_through(torch_ext.dcp.FileSystemReader(folder))
        message = str(error.value)
        assert str(folder) in message and info.relative_path in message and f"'{fqn}'" in message, message
        flip_bit(data, info.offset + start + size // 2, bit=2)
    # Unflipped, the folder reads as before.
    assert_bitwise_equal(load_through(torch_ext.dcp.FileSystemReader(folder)), expected)


def leaves(tree) -> dict:
    """A nested state's values by path, whatever its containers' types and order."""
    flat, _ = tree_flatten_with_path(tree)
    return {"".join(str(key) for key in path): value for path, value in flat}


def assert_same_leaves(state, reference, what: str) -> None:
    got, expected = leaves(state), leaves(reference)
    assert sorted(got) == sorted(expected), what
    for path, saved in expected.items():
        value = got[path]
        if isinstance(saved, torch.Tensor):
            assert value.dtype == saved.dtype and torch.equal(value, saved), f"{what}: {path}"
        else:
            assert value == saved, f"{what}: {path}"


def ranks(root: pathlib.Path, world_size: int, *args: str) -> None:
    torchrun(HERE / "dcp_storage_ranks.py", world_size, root, *args, timeout=RANKS_TIMEOUT_S)


@pytest.fixture(scope="module")
def fsdp_runs(tmp_path_factory) -> pathlib.Path:
    """The folders of an FSDP2 job of 4 ranks, then of one of 2 ranks that
    also loads the 4 ranks' folders (dcp_storage_ranks.py)."""
    root = tmp_path_factory.mktemp("fsdp")
    ranks(root, 4)
    ranks(root, 2, "4")
    return root


def test_fsdp2_state_dicts_go_both_ways_and_reshard_through_our_writer_and_reader(fsdp_runs):
    # Every rank's loads matched the saved full tensors (the jobs raise otherwise).
    for world_size in (2, 4):
        assert (fsdp_runs / f"reference_{world_size}.pt").is_file()


@pytest.mark.parametrize("world_size", [2, 4])
def test_our_multi_rank_folders_have_upstreams_layout_and_read_whole(fsdp_runs, tmp_path, world_size):
    reference = torch.load(fsdp_runs / f"reference_{world_size}.pt", weights_only=True)
    upstream, ours, ours_async = (fsdp_runs / f"{name}_{world_size}" for name in ("upstream", "ours", "ours_async"))
    data_files = [f"__{rank}_{i}.distcp" for rank in range(world_size) for i in range(2)]
    assert file_names(ours) == [".metadata"] + data_files
    assert file_names(ours_async) == file_names(upstream)
    for folder in (upstream, ours, ours_async):
        out = tmp_path / f"{folder.name}.pt"
        dcp_to_torch_save(folder, out)
        assert_same_leaves(torch.load(out, weights_only=False), reference, f"dcp_to_torch_save of {folder.name}")
        assert_same_leaves(torch_ext.dcp.load_dcp(folder), reference, f"load_dcp of {folder.name}")
