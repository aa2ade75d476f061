"""torch_ext.AsyncCheckpointer from Python and TorchScript, against upstream DCP's
CheckpointWriter and CheckpointReader in the same process."""

import threading
from typing import Any

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


def sample_state_dict():
    return {
        "model": {
            "weight": torch.randn(4, 3).to(torch.bfloat16),
            "steps": torch.arange(5),
            "layers": [torch.randn(2), torch.randn(3, 2)],
        },
        "optimizer": {"lr": 0.125, "nesterov": True, "name": "sgd", "step": 7},
        "epoch": 3,
    }


def assert_same(expected, actual):
    """Equal structure and values; tensors bitwise, with dtype and shape."""
    assert type(expected) is type(actual), (expected, actual)
    if isinstance(expected, torch.Tensor):
        assert expected.dtype == actual.dtype and expected.shape == actual.shape
        assert torch.equal(expected, actual)
    elif isinstance(expected, dict):
        assert expected.keys() == actual.keys()
        for key in expected:
            assert_same(expected[key], actual[key])
    elif isinstance(expected, list):
        assert len(expected) == len(actual)
        for e, a in zip(expected, actual):
            assert_same(e, a)
    else:
        assert expected == actual


@pytest.fixture
def checkpointer():
    with torch_ext.AsyncCheckpointer() as checkpointer:
        yield checkpointer


def test_save_returns_torch_futures_completed_with_none(checkpointer, tmp_path):
    stage_future, write_future = checkpointer.save(tmp_path, sample_state_dict())
    assert isinstance(stage_future, torch._C.Future)  # what torch.jit.fork returns
    assert isinstance(write_future, torch._C.Future)
    assert bounded.wait(write_future, "the write") is None
    assert stage_future.done() and stage_future.wait() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_0.pt"]


def test_upstream_reader_reads_ours_whole(checkpointer, tmp_path):
    state_dict = sample_state_dict()
    bounded.wait(checkpointer.save(tmp_path, state_dict)[1], "the write")
    loaded, missing = CheckpointReader(RankInfo(0, 1)).read(str(tmp_path))
    assert_same(state_dict, loaded)
    assert missing == []
    assert_same(state_dict, torch.load(tmp_path / "checkpoint_0.pt", weights_only=True))


def test_upstream_reader_reads_ours_partially(checkpointer, tmp_path):
    state_dict = sample_state_dict()
    bounded.wait(checkpointer.save(tmp_path, state_dict)[1], "the write")
    template = {
        "model": {"weight": torch.zeros(4, 3, dtype=torch.bfloat16), "absent": None},
        "epoch": None,
    }
    loaded, missing = CheckpointReader(RankInfo(0, 1)).read(str(tmp_path), template)
    assert_same(state_dict["model"]["weight"], loaded["model"]["weight"])
    assert loaded["model"]["weight"] is template["model"]["weight"]  # filled in place
    assert loaded["epoch"] == 3
    assert missing == ["model.absent"]


def test_ours_loads_what_upstream_writer_wrote(checkpointer, tmp_path):
    state_dict = sample_state_dict()
    CheckpointWriter(CheckpointWriterConfig(), RankInfo(0, 1)).write(str(tmp_path), state_dict)
    assert_same(state_dict, checkpointer.load(tmp_path))


def test_tensors_may_change_once_staged(checkpointer, tmp_path):
    weight = torch.ones(1024, 256)
    stage_future, write_future = checkpointer.save(tmp_path, {"weight": weight})
    bounded.wait(stage_future, "the staging")
    weight.add_(1)
    bounded.wait(write_future, "the write")
    assert torch.equal(checkpointer.load(tmp_path)["weight"], torch.ones(1024, 256))


@pytest.mark.parametrize(
    "bad, what",
    [(lambda: 0, "a function"), (threading.Event(), "a Event"), (1j, "a complex")],
    ids=["lambda", "custom class", "complex"],
)
def test_unsupported_value_raises_on_the_calling_thread_naming_its_key_path(checkpointer, tmp_path, bad, what):
    with pytest.raises(TypeError, match=f"state_dict entry 'model\\.layers\\.1\\.0' is {what}"):
        checkpointer.save(tmp_path / "a", {"model": {"layers": [1, {0: bad}]}})
    # Nothing reached the checkpointer: no stale error on the next save.
    bounded.wait(checkpointer.save(tmp_path / "b", {"x": 1})[1], "the write")
    assert checkpointer.load(tmp_path / "b") == {"x": 1}
    assert not (tmp_path / "a").exists()


def test_staging_error_in_torchscript_fails_both_futures_and_the_next_save_raises_it_once(tmp_path):
    # TorchScript hands values over unconverted: a complex fails in staging.
    checkpointer = torch.classes.torch_ext.AsyncCheckpointer()
    stage_future, write_future = checkpointer.save(str(tmp_path / "a"), {"model": {"bad": 1j}})
    with pytest.raises(TypeError, match="state_dict entry 'model.bad' is a ComplexDouble"):
        bounded.wait(stage_future, "the staging")
    with pytest.raises(TypeError, match="model.bad"):
        bounded.wait(write_future, "the write")
    with pytest.raises(TypeError, match="model.bad"):
        checkpointer.save(str(tmp_path / "b"), {"x": 1})
    bounded.wait(checkpointer.save(str(tmp_path / "b"), {"x": 1})[1], "the write")
    assert checkpointer.load(str(tmp_path / "b")) == {"x": 1}
    checkpointer.close()


def test_unwritable_path_fails_the_write_future_naming_it(checkpointer, tmp_path):
    (tmp_path / "file").write_text("a regular file, not a folder")
    bad = tmp_path / "file" / "step_1"
    _, write_future = checkpointer.save(bad, {"x": torch.ones(2)})
    with pytest.raises(RuntimeError, match=f"'{bad}'"):
        bounded.wait(write_future, "the write")


# save() waits for the previous write with the GIL released; a Python
# callback on that write, run by the writer thread, needs the GIL. In a
# process of its own: a save that held the GIL would stop every thread.
CALLBACK_WHILE_THE_NEXT_SAVE_WAITS = """
import sys, threading, torch, torch_ext
checkpointer = torch_ext.AsyncCheckpointer()
ran = threading.Event()
_, write_future = checkpointer.save(sys.argv[1] + "/a", {"x": torch.randn(1 << 20)})
write_future.then(lambda _: ran.set())
checkpointer.save(sys.argv[1] + "/b", {"x": torch.randn(1 << 20)})[1].wait()
print(ran.is_set())
checkpointer.close()
"""


def test_python_callback_on_the_write_future_runs_while_the_next_save_waits(tmp_path):
    out = bounded.run_python(CALLBACK_WHILE_THE_NEXT_SAVE_WAITS, tmp_path, what="a save after a Python callback")
    assert out.split() == ["True"]


def test_load_of_a_missing_checkpoint_names_the_file(checkpointer, tmp_path):
    with pytest.raises(RuntimeError, match=f"cannot open the checkpoint file '{tmp_path / 'checkpoint_0.pt'}'"):
        checkpointer.load(tmp_path)


def test_save_after_close_is_refused(tmp_path):
    checkpointer = torch_ext.AsyncCheckpointer()
    _, write_future = checkpointer.save(tmp_path, {"x": torch.randn(1 << 20)})
    checkpointer.close()
    assert write_future.done()
    with pytest.raises(RuntimeError, match="save called after close"):
        checkpointer.save(tmp_path, {"x": 1})


def test_options_reach_the_cpp_checkpointer_and_are_checked_there():
    # The bound is C++'s (AsyncCheckpointerOptions); Python forwards the option.
    with pytest.raises(ValueError, match="max_staging_bytes to be 0 \\(no bound\\) or at least 1048576 .*, got 1000"):
        torch_ext.AsyncCheckpointer(max_staging_bytes=1000)
    with pytest.raises(ValueError, match="1 <= staging_threads <= 1024, got 0"):
        torch_ext.AsyncCheckpointer(staging_threads=0)
    with pytest.raises(ValueError, match="0 <= writer_nice <= 19, got 20"):
        torch_ext.AsyncCheckpointer(writer_nice=20)


class CheckpointInScript(torch.nn.Module):
    def forward(
        self, checkpointer: torch.classes.torch_ext.AsyncCheckpointer, path: str, weight: torch.Tensor
    ) -> dict[str, Any]:
        state_dict: dict[str, Any] = {"weight": weight, "step": 3}
        stage_future, write_future = checkpointer.save(path, state_dict)
        torch.jit.wait(stage_future)
        torch.jit.wait(write_future)
        return checkpointer.load(path)


def test_torchscript_saves_waits_and_loads(tmp_path):
    scripted = torch.jit.script(CheckpointInScript())
    torch.jit.save(scripted, str(tmp_path / "module.pt"))
    loaded_module = torch.jit.load(str(tmp_path / "module.pt"))
    checkpointer = torch.classes.torch_ext.AsyncCheckpointer()
    expected = {"weight": torch.randn(3, 4), "step": 3}
    for module, folder in [(scripted, "scripted"), (loaded_module, "loaded")]:
        path = str(tmp_path / folder)
        loaded = bounded.call(module, checkpointer, path, expected["weight"], what=f"the {folder} module")
        assert_same(expected, loaded)
        assert_same(expected, CheckpointReader(RankInfo(0, 1)).read(str(tmp_path / folder))[0])
    checkpointer.close()


def test_a_key_a_checkpoint_cannot_hold_is_refused_naming_where_it_is(checkpointer, tmp_path):
    with pytest.raises(TypeError, match="state_dict entry 'optimizer.state' is a dict with a key of type tuple"):
        checkpointer.save(tmp_path, {"optimizer": {"state": {(0, 1): torch.ones(1)}}})


def test_torchscript_class_loads_verified_or_not_and_partially(tmp_path):
    checkpointer = torch.classes.torch_ext.AsyncCheckpointer()
    torch_ext.save({"model": {"w": torch.ones(2), "b": torch.zeros(1)}, "step": 4}, tmp_path / "checkpoint_0.pt")
    assert_same({"model": {"w": torch.ones(2)}}, checkpointer.load(str(tmp_path), True, ["model.w"]))
    assert checkpointer.load(str(tmp_path), verify=False)["step"] == 4
    checkpointer.close()
