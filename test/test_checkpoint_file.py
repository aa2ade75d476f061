"""The checkpoint file layer from Python (torch_ext.save / torch_ext.load), side
by side with torch.save, torch.load and upstream DCP's CheckpointWriter and
CheckpointReader in the same process."""

import collections
import os
import pickle
import re
import struct
import subprocess
import zipfile

import pytest
import torch
from torch.distributed.checkpoint._experimental.checkpoint_reader import CheckpointReader
from torch.distributed.checkpoint._experimental.checkpoint_writer import (
    CheckpointWriter,
    CheckpointWriterConfig,
)
from torch.distributed.checkpoint._experimental.types import RankInfo

import bounded
import torch_ext
from checkpoint_corpus import TiedModel, assert_same, train_steps, training_state


@pytest.fixture(scope="module")
def state():
    return training_state()


def test_torch_load_reads_ours_with_the_same_types_and_sharing(state, tmp_path):
    torch_ext.save(state, tmp_path / "ours.pt")
    assert_same(state, torch.load(tmp_path / "ours.pt", weights_only=True))
    assert_same(state, torch.load(tmp_path / "ours.pt", weights_only=True, mmap=True))


def test_we_read_torch_save_with_the_same_types_and_sharing(state, tmp_path):
    torch.save(state, tmp_path / "theirs.pt")
    assert_same(state, torch_ext.load(tmp_path / "theirs.pt"))


def test_round_trip_keeps_types_sharing_and_metadata(state, tmp_path):
    torch_ext.save(state, tmp_path / "ours.pt")
    loaded = torch_ext.load(tmp_path / "ours.pt")
    assert_same(state, loaded)
    model = loaded["model"]
    assert isinstance(model, collections.OrderedDict) and model._metadata == state["model"]._metadata
    assert model["embed.weight"].data_ptr() == model["head.weight"].data_ptr()  # the tie
    views = loaded["views"]
    assert views["column"].untyped_storage().data_ptr() == views["base"].untyped_storage().data_ptr()


def test_upstream_reader_reads_ours_whole_and_partially(state, tmp_path):
    checkpointer = torch_ext.AsyncCheckpointer()
    bounded.wait(checkpointer.save(tmp_path, state)[1], "the write")
    checkpointer.close()
    loaded, missing = CheckpointReader(RankInfo(0, 1)).read(str(tmp_path))
    assert_same(state, loaded)
    assert missing == []
    template = {"model": collections.OrderedDict({"body.1.running_var": torch.zeros(8)}), "epoch": None}
    partial, missing = CheckpointReader(RankInfo(0, 1)).read(str(tmp_path), template)
    assert torch.equal(partial["model"]["body.1.running_var"], state["model"]["body.1.running_var"])
    assert partial["epoch"] == 3 and missing == []


def test_we_read_upstream_writer(state, tmp_path):
    CheckpointWriter(CheckpointWriterConfig(), RankInfo(0, 1)).write(str(tmp_path), state)
    checkpointer = torch_ext.AsyncCheckpointer()
    assert_same(state, checkpointer.load(tmp_path))
    checkpointer.close()


def test_file_is_no_larger_than_torch_save(state, tmp_path):
    torch.save(state, tmp_path / "theirs.pt")
    torch_ext.save(state, tmp_path / "ours.pt")
    theirs = os.path.getsize(tmp_path / "theirs.pt")
    assert os.path.getsize(tmp_path / "ours.pt") <= theirs * 1.02 + 4096


def test_tied_weights_are_written_once(tmp_path):
    weight = torch.randn(1024, 256)
    torch_ext.save({"embed": weight, "head": weight, "half": weight[:512]}, tmp_path / "tied.pt")
    torch_ext.save({"embed": weight}, tmp_path / "one.pt")
    assert os.path.getsize(tmp_path / "tied.pt") - os.path.getsize(tmp_path / "one.pt") < 4096
    assert len([n for n in zipfile.ZipFile(tmp_path / "tied.pt").namelist() if "/data/" in n]) == 1


def test_every_record_carries_its_crc32(state, tmp_path):
    torch_ext.save(state, tmp_path / "ours.pt")
    with zipfile.ZipFile(tmp_path / "ours.pt") as archive:
        assert archive.testzip() is None
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())


def record_span(path, name_suffix):
    """(name, offset of the data, size) of the record whose name ends so."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(name_suffix))
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return info.filename, info.header_offset + 30 + name_length + extra_length, info.file_size


def flip_bit(path, offset, bit=0):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


@pytest.mark.parametrize("writer", ["torch_ext", "torch.save"])
def test_a_flipped_bit_in_a_tensor_record_fails_naming_the_file_record_and_key(tmp_path, writer):
    path = tmp_path / "ckpt.pt"
    state = {"model": {"fc.weight": torch.randn(64, 64), "fc.bias": torch.randn(64)}}
    (torch_ext.save if writer == "torch_ext" else torch.save)(state, path)
    name, offset, size = record_span(path, "data/1")  # both number storages in order: fc.bias's
    flip_bit(path, offset + size // 2, bit=3)
    with pytest.raises(RuntimeError, match=rf"'{path}'.*record '{name}' \(state_dict entry 'model\.fc\.bias'\) fails its CRC32"):
        torch_ext.load(path)
    # Unverified, the damage loads silently, as torch.load (which checks no CRC32) loads it.
    assert not torch.equal(torch_ext.load(path, verify=False)["model"]["fc.bias"], state["model"]["fc.bias"])
    assert not torch.equal(torch.load(path, weights_only=True)["model"]["fc.bias"], state["model"]["fc.bias"])


@pytest.mark.parametrize("record", ["data.pkl", "byteorder", "version", ".format_version"])
def test_a_flipped_bit_in_any_other_record_fails_naming_it(tmp_path, record):
    path = tmp_path / "ckpt.pt"
    torch_ext.save({"x": torch.ones(3)}, path)
    name, offset, size = record_span(path, record)
    flip_bit(path, offset + size - 1, bit=1)
    with pytest.raises(RuntimeError, match=rf"'{path}'.*record '{name}'"):
        torch_ext.load(path)


def test_partial_load_reads_only_the_named_entries(state, tmp_path):
    path = tmp_path / "ckpt.pt"
    torch_ext.save(state, path)
    loaded = torch_ext.load(path, keys=["model.body.1.running_mean", "optimizer.state.0", "nested.2.1", "epoch"])
    assert list(loaded) == ["model", "optimizer", "nested", "epoch"]
    assert isinstance(loaded["model"], collections.OrderedDict)
    assert list(loaded["model"]) == ["body.1.running_mean"]
    assert_same(state["model"]["body.1.running_mean"], loaded["model"]["body.1.running_mean"])
    assert_same(state["optimizer"]["state"][0], loaded["optimizer"]["state"][0])
    assert loaded["nested"] == ([state["nested"][2][1]],)
    assert loaded["epoch"] == 3


def test_partial_load_does_not_read_other_records(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch_ext.save({"wanted": torch.ones(8), "other": torch.zeros(1 << 16)}, path)
    _, offset, size = record_span(path, "data/1")
    flip_bit(path, offset + size // 2)
    assert torch.equal(torch_ext.load(path, keys=["wanted"])["wanted"], torch.ones(8))  # never read "other"
    with pytest.raises(RuntimeError, match="fails its CRC32"):
        torch_ext.load(path)


def test_partial_load_of_a_missing_key_names_it(tmp_path):
    torch_ext.save({"model": {"w": torch.ones(1)}}, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match=r"has no entry 'model\.v', 'x'"):
        torch_ext.load(tmp_path / "ckpt.pt", keys=["model.w", "model.v", "x"])


def nested_state(x, y):
    """A list index, an int key and a key that holds a dot on the way to x and y."""
    return {"model": {"layers": [1, {0: x}]}, "optim": {"state": {"0.weight": {"exp_avg": y}}}}


@pytest.mark.parametrize("bad_x", [True, False], ids=["index-and-int-key", "dotted-key"])
def test_the_key_path_an_error_names_selects_that_entry(tmp_path, bad_x):
    x, y = torch.randn(3), torch.randn(2)
    with pytest.raises(TypeError, match="is a function") as error:
        torch_ext.save(nested_state(lambda: 0, y) if bad_x else nested_state(x, lambda: 0), tmp_path / "bad.pt")
    path = re.search(r"entry '([^']*)'", str(error.value)).group(1)
    assert path == ("model.layers.1.0" if bad_x else "optim.state.0.weight.exp_avg")
    torch_ext.save(nested_state(x, y), tmp_path / "ckpt.pt")
    selected = torch_ext.load(tmp_path / "ckpt.pt", keys=[path])
    if bad_x:
        assert list(selected) == ["model"] and len(selected["model"]["layers"]) == 1
        assert torch.equal(selected["model"]["layers"][0][0], x)
    else:
        assert list(selected) == ["optim"]
        assert torch.equal(selected["optim"]["state"]["0.weight"]["exp_avg"], y)


def test_keys_must_be_a_sequence_of_key_paths(tmp_path):
    torch_ext.save({"model": {"w": torch.ones(1)}}, tmp_path / "ckpt.pt")
    with pytest.raises(TypeError, match="keys must be a sequence of key paths"):
        torch_ext.load(tmp_path / "ckpt.pt", keys="model.w")
    with pytest.raises(TypeError, match=r"keys must be key paths \(str\), got a int"):
        torch_ext.load(tmp_path / "ckpt.pt", keys=["model", 0])


def test_loaded_tensors_are_copy_on_write_views_of_the_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch_ext.save({"x": torch.zeros(1 << 16)}, path)
    before = path.read_bytes()
    loaded = torch_ext.load(path)
    loaded["x"].add_(1)
    assert path.read_bytes() == before
    assert torch.equal(torch_ext.load(path)["x"], torch.zeros(1 << 16))


class RunsCode:
    """Pickled as a call of os.system, as a malicious file would be."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_names_another_global_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"weights": torch.ones(2), "payload": RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(RuntimeError, match=r"names the global 'posix\.system'.*loading runs no code"):
        torch_ext.load(tmp_path / "evil.pt")
    assert not marker.exists()
    # The same refusal torch.load(weights_only=True) makes.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "evil.pt", weights_only=True)
    assert not marker.exists()


def test_truncated_and_garbage_files_fail_naming_the_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch_ext.save({"x": torch.ones(1000)}, path)
    data = path.read_bytes()
    for size in (0, 10, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:size])
        with pytest.raises(RuntimeError, match=f"'{path}'") as error:
            torch_ext.load(path)
        assert "INTERNAL ASSERT" not in str(error.value)
    path.write_bytes(os.urandom(4096))
    with pytest.raises(RuntimeError, match=f"'{path}' is corrupted or is not a checkpoint"):
        torch_ext.load(path)


def test_python_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path):
    def make():
        torch.manual_seed(1)
        model = TiedModel()
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
        return model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)

    model, optimizer, scheduler = make()
    train_steps(model, optimizer, scheduler, steps=6, seed=5)
    uninterrupted = model.state_dict()

    model, optimizer, scheduler = make()
    train_steps(model, optimizer, scheduler, steps=3, seed=5)
    torch_ext.save(
        {"model": model.state_dict(), "optim": optimizer.state_dict(), "sched": scheduler.state_dict()},
        tmp_path / "ckpt.pt",
    )
    model, optimizer, scheduler = make()
    saved = torch_ext.load(tmp_path / "ckpt.pt")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optim"])
    scheduler.load_state_dict(saved["sched"])
    # The rest of the same batches: the generator of train_steps restarts, so skip three.
    generator_state = torch.Generator().manual_seed(5)
    for _ in range(3):
        torch.randint(0, 16, (32,), generator=generator_state)
    for _ in range(3):
        tokens = torch.randint(0, 16, (32,), generator=generator_state)
        loss = torch.nn.functional.cross_entropy(model(tokens), tokens)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    assert_same(uninterrupted, model.state_dict())


def test_files_over_4_gib_use_zip64(tmp_path):
    # A record of more than 4 GiB, and one that starts past 4 GiB: the zip64
    # fields that torch.save writes for big checkpoints. Zero pages cost no
    # memory until written; the file is deleted at the end.
    big = torch.zeros((1 << 32) + 64, dtype=torch.uint8)
    path = tmp_path / "big.pt"
    torch_ext.save({"big": big, "after": torch.arange(5)}, path)
    del big
    with zipfile.ZipFile(path) as archive:
        sizes = {i.filename.rsplit("/", 1)[-1]: (i.file_size, i.header_offset) for i in archive.infolist()}
    assert sizes["0"][0] == (1 << 32) + 64 and sizes["1"][1] > 1 << 32
    for loaded in (torch_ext.load(path), torch.load(path, weights_only=True, mmap=True)):
        assert torch.equal(loaded["after"], torch.arange(5))
        assert loaded["big"].numel() == (1 << 32) + 64
    path.unlink()


def test_cpp_reads_a_python_state_dict_in_order_and_writes_it_back_as_the_same_ordered_dict(cpp_build, tmp_path):
    torch.manual_seed(0)
    state_dict = TiedModel().state_dict()
    torch.save(state_dict, tmp_path / "python.pt")
    tool = str(cpp_build / "test" / "cpp" / "checkpoint_tool")
    described = subprocess.run(
        [tool, "describe", str(tmp_path / "python.pt")], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    assert described == ["OrderedDict", *state_dict.keys()]
    subprocess.run([tool, "resave", str(tmp_path / "python.pt"), str(tmp_path / "cpp.pt")], timeout=120, check=True)
    assert_same(state_dict, torch.load(tmp_path / "cpp.pt", weights_only=True))
