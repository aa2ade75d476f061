"""DCP's standard format: torch_ext's reader and writer against upstream's
FileSystemWriter and FileSystemReader, both in this process."""

import pathlib
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import select
import time

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader

import torch_ext
from torch_ext.dcp import load_dcp, save_dcp

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


def storage_data(folder: pathlib.Path):
    """(key, file, offset, length) of every item, from upstream's reader."""
    metadata = FileSystemReader(folder).read_metadata()
    return [(index.fqn, info.relative_path, info.offset, info.length) for index, info in metadata.storage_data.items()]


@pytest.mark.parametrize("thread_count", [1, 4])
@pytest.mark.parametrize("compress", [False, True])
def test_load_dcp_reads_upstream_save_bitwise(tmp_path, thread_count, compress):
    folder = tmp_path / "ckpt"
    upstream_save(training_state(), folder, thread_count, compress)
    if thread_count == 4:
        assert sorted(p.name for p in folder.glob("*.distcp")) == [f"__0_{i}.distcp" for i in range(4)]
    assert_bitwise_equal(load_dcp(folder), upstream_full_state(folder, tmp_path))


def test_cpp_reads_upstream_save_and_upstream_reads_cpp_save(tmp_path, cpp_build):
    tool = str(cpp_build / "test" / "cpp" / "dcp_tool")
    folder = tmp_path / "ckpt"
    upstream_save(training_state(), folder, thread_count=4, compress=True)
    expected = upstream_full_state(folder, tmp_path)
    subprocess.run([tool, "to_torch_save", str(folder), str(tmp_path / "cpp.pt")], check=True, timeout=120)
    assert_bitwise_equal(torch.load(tmp_path / "cpp.pt", weights_only=True), expected)

    torch.save(expected, tmp_path / "full.pt")
    written = tmp_path / "written"
    subprocess.run([tool, "from_torch_save", str(tmp_path / "full.pt"), str(written)], check=True, timeout=120)
    target = training_state(seed=1)
    dcp.load(target, storage_reader=FileSystemReader(written))
    assert_bitwise_equal(dict(target["model"]), expected["model"])  # dcp.load keeps its OrderedDict
    assert_bitwise_equal(target["extra"], expected["extra"])
    assert_bitwise_equal(target["optim"]["param_groups"], expected["optim"]["param_groups"])
    # dcp.load keeps the target's keys: the optimizer's int keys were str() in the file.
    assert_bitwise_equal({str(k): v for k, v in target["optim"]["state"].items()}, expected["optim"]["state"])
    assert target["step"] == expected["step"]


def test_load_dcp_reads_only_the_keys_asked_for(tmp_path):
    folder = tmp_path / "ckpt"
    upstream_save(training_state(), folder)
    full = upstream_full_state(folder, tmp_path)
    part = load_dcp(folder, keys=["model.0.weight", "optim.param_groups.0.lr", "extra.pair"])
    assert_bitwise_equal(
        part,
        {
            "model": {"0.weight": full["model"]["0.weight"]},
            "optim": {"param_groups": [{"lr": full["optim"]["param_groups"][0]["lr"]}]},
            "extra": {"pair": full["extra"]["pair"]},
        },
    )
    # Only those items are read: the rest may be gone.
    for fqn, name, offset, length in storage_data(folder):
        if fqn in ("model.0.weight", "optim.param_groups.0.lr", "extra.pair"):
            continue
        with open(folder / name, "r+b") as f:
            f.seek(offset)
            f.write(b"\0" * length)
    assert_bitwise_equal(load_dcp(folder, keys=["model.0.weight"]), {"model": {"0.weight": full["model"]["0.weight"]}})
    with pytest.raises(ValueError, match="no entry 'model.9.weight'"):
        load_dcp(folder, keys=["model.9.weight"])


def test_torch_ext_load_reads_a_dcp_folder(tmp_path):
    folder = tmp_path / "ckpt"
    upstream_save(training_state(), folder)
    assert_bitwise_equal(torch_ext.load(folder), load_dcp(folder))


@pytest.mark.parametrize("thread_count", [1, 3])
@pytest.mark.parametrize("compress", [False, True])
def test_upstream_reads_save_dcp_bitwise(tmp_path, thread_count, compress):
    state = training_state()
    folder = tmp_path / "ckpt"
    save_dcp(state, folder, thread_count=thread_count, compress=compress)
    expected = upstream_full_state(folder, tmp_path)

    # dcp.load into a state dict of the same layout.
    target = training_state(seed=1)
    dcp.load(target, storage_reader=FileSystemReader(folder))
    assert_bitwise_equal(dict(target["model"]), expected["model"])  # dcp.load keeps its OrderedDict
    assert_bitwise_equal(target["extra"]["tensors"], expected["extra"]["tensors"])

    # Upstream's view of everything equals what upstream saves itself.
    reference = tmp_path / "reference"
    upstream_save(state, reference)
    assert_bitwise_equal(expected, upstream_full_state(reference, tmp_path))
    assert_bitwise_equal(load_dcp(folder), expected)

    metadata = FileSystemReader(folder).read_metadata()
    theirs = FileSystemReader(reference).read_metadata()
    assert metadata.planner_data == theirs.planner_data
    assert list(metadata.state_dict_metadata) == list(theirs.state_dict_metadata)
    for key, entry in theirs.state_dict_metadata.items():
        assert type(metadata.state_dict_metadata[key]) is type(entry), key
        if hasattr(entry, "size"):
            ours = metadata.state_dict_metadata[key]
            assert (ours.size, ours.chunks, ours.properties) == (entry.size, entry.chunks, entry.properties), key
    assert set(metadata.storage_data) == set(theirs.storage_data)
    assert metadata.version == theirs.version == "1.0.0"
    assert pathlib.Path(metadata.storage_meta.checkpoint_id) == folder
    assert len(metadata.storage_meta.save_id) == 36
    descriptors = {tuple(info.transform_descriptors or ()) for info in metadata.storage_data.values()}
    assert descriptors == ({("stream.zstd/1",)} if compress else {()})
    assert len(list(folder.glob("*.distcp"))) == thread_count


def test_save_dcp_overwrites_a_checkpoint(tmp_path):
    folder = tmp_path / "ckpt"
    save_dcp(training_state(seed=0), folder, thread_count=4)
    save_dcp(training_state(seed=1), folder, thread_count=1)
    assert_bitwise_equal(load_dcp(folder), upstream_full_state(folder, tmp_path))
    assert load_dcp(folder)["step"] == 11


def test_save_dcp_refuses_what_a_checkpoint_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="entry 'extra.f'"):
        save_dcp({"extra": {"f": lambda: 0}}, tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()


def test_a_metadata_naming_another_global_is_refused_and_runs_nothing(tmp_path):
    folder = tmp_path / "ckpt"
    upstream_save(training_state(), folder)
    marker = tmp_path / "ran"
    # The payload alone, and inside a real Metadata, after DCP's own objects.
    metadata = FileSystemReader(folder).read_metadata()
    metadata.storage_meta.modules = [Payload(marker)]
    for hostile in (pickle.dumps(Payload(marker), protocol=4), pickle.dumps(metadata, protocol=4)):
        (folder / ".metadata").write_bytes(hostile)
        for read in (load_dcp, torch_ext.load):
            with pytest.raises(RuntimeError, match="names the global 'posix.system'"):
                read(folder)
        assert not marker.exists()


@pytest.mark.parametrize("compress", [False, True])
def test_a_flipped_bit_in_any_item_is_caught_naming_folder_file_and_key(tmp_path, compress):
    folder = tmp_path / "ckpt"
    upstream_save(training_state(), folder, thread_count=2, compress=compress)
    expected = upstream_full_state(folder, tmp_path)
    caught = flips = 0
    for fqn, name, offset, length in storage_data(folder):
        item = (folder / name).read_bytes()[offset : offset + length]
        if compress:
            # Bytes of the zstd frame: most change what the records hold.
            positions = [offset + length // 3, offset + length // 2, offset + length - 1]
        else:
            positions = [offset + start + size // 2 for start, size in record_payloads(item) if size > 0]
        for position in positions:
            flips += 1
            flip_bit(folder / name, position, bit=3)
            try:
                assert_bitwise_equal(load_dcp(folder), expected)
                assert compress, f"a flip in a record of '{fqn}' was read"
            except RuntimeError as error:
                caught += 1
                message = str(error)
                assert str(folder) in message and name in message and f"'{fqn}'" in message, message
            finally:
                flip_bit(folder / name, position, bit=3)
    assert caught >= flips * 3 // 4, f"{caught} of {flips} flips caught"
    # Anywhere else in a file, a flip raises or leaves the values as saved.
    rng = random.Random(0)
    for name in sorted(p.name for p in folder.glob("*.distcp")):
        size = (folder / name).stat().st_size
        for _ in range(40):
            position, bit = rng.randrange(size), rng.randrange(8)
            flip_bit(folder / name, position, bit)
            try:
                assert_bitwise_equal(load_dcp(folder), expected)
            except RuntimeError:
                pass
            finally:
                flip_bit(folder / name, position, bit)


def test_a_truncated_or_missing_data_file_is_an_error_naming_it(tmp_path):
    folder = tmp_path / "ckpt"
    upstream_save(training_state(), folder)
    data = folder / "__0_0.distcp"
    content = data.read_bytes()
    data.write_bytes(content[: len(content) // 2])
    with pytest.raises(RuntimeError, match="__0_0.distcp") as error:
        load_dcp(folder)
    assert "truncated" in str(error.value)
    data.unlink()
    with pytest.raises(RuntimeError, match="__0_0.distcp"):
        load_dcp(folder)
    (folder / ".metadata").unlink()
    with pytest.raises(RuntimeError, match=r"\.metadata"):
        load_dcp(folder)


CRASHING_SAVER = textwrap.dedent(
    """
    import sys, torch
    from torch_ext.dcp import save_dcp
    folder = sys.argv[1]
    for step in range(1_000_000):
        state = {"model": {f"w{i}": torch.full((256, 1024), float(step)) for i in range(8)},
                 "meta": {"step": step, "name": f"step {step}"}}
        save_dcp(state, folder, thread_count=2)
        print(step, flush=True)
    """
)


def test_sigkill_during_repeated_saves_never_leaves_wrong_values(tmp_path):
    folder = tmp_path / "ckpt"
    rng = random.Random(1)
    kills = 0
    deadline = time.monotonic() + 540
    while kills < 20:
        assert time.monotonic() < deadline, f"only {kills} kills in time"
        child = subprocess.Popen(
            [sys.executable, "-c", CRASHING_SAVER, str(folder)], stdout=subprocess.PIPE, text=True
        )
        try:
            # One save done: the kill lands in a later one.
            ready, _, _ = select.select([child.stdout], [], [], max(0.0, deadline - time.monotonic()))
            assert ready and child.stdout.readline(), "the saver made no save in time"
            time.sleep(rng.uniform(0.0, 0.3))  # a random point of the next saves, not a wait for anything
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=60)
            child.stdout.close()
        kills += 1
        if not (folder / ".metadata").exists():
            with pytest.raises(RuntimeError, match=r"\.metadata"):
                load_dcp(folder)
            continue
        state = load_dcp(folder)
        step = state["meta"]["step"]
        assert state["meta"]["name"] == f"step {step}"
        for tensor in state["model"].values():
            assert torch.equal(tensor, torch.full((256, 1024), float(step)))
