"""The `torch_ext` command line as a user runs it: its exit status and output checked, on good and damaged
checkpoints of every format; conversions read back by upstream's readers (torch.load, dcp, the safetensors
package), an upstream 2-rank FSDP2 DCP checkpoint consolidated as upstream consolidates it, and the memory a
streaming conversion takes. Commands run in this process, through the console script's entry
(torch_ext.cli.main), each in a new process only where the process matters: the console script and
`python -m torch_ext` themselves, a terminal's progress bar, peak memory: a new process spends seconds of
CPU importing torch."""

import contextlib
import fcntl
import io
import json
import os
import pathlib
import pty
import shutil
import struct
import subprocess
import sys
import termios
import warnings

import pytest
import safetensors.torch
import torch

import torch_ext
from torch_ext.cli import main
from torch_ext.dcp import save_dcp

from jobs import torchrun

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT_S = 120
FSDP_SCRIPT = ROOT / "bench" / "python" / "fsdp_checkpoint.py"


def cli(*args):
    """`torch_ext ARGS` in this process: its exit status and what it printed, as a process gives them."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main([str(arg) for arg in args])
        except SystemExit as exit:  # argparse's usage errors
            status = exit.code
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


def cli_json(*args, status=0):
    result = cli(*args, "--json")
    assert result.returncode == status, result.stdout + result.stderr
    return json.loads(result.stdout)


def raw(tensor):
    return tensor.contiguous().reshape(-1).view(torch.uint8)


def assert_same_state(expected, got, where="state"):
    """The same nesting (containers' types, keys in order), values and tensors, bitwise."""
    assert type(got) is type(expected), where
    if isinstance(expected, torch.Tensor):
        assert got.dtype == expected.dtype and got.shape == expected.shape, where
        assert torch.equal(raw(got), raw(expected)), where
    elif isinstance(expected, dict):
        assert list(got) == list(expected), where
        for key, value in expected.items():
            assert_same_state(value, got[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), where
        for index, (value, other) in enumerate(zip(expected, got)):
            assert_same_state(value, other, f"{where}.{index}")
    else:
        assert got == expected, where


def assert_bitwise(expected, got):
    assert sorted(got) == sorted(expected)
    for key, tensor in expected.items():
        assert got[key].dtype == tensor.dtype and got[key].shape == tensor.shape, key
        assert torch.equal(raw(got[key]), raw(tensor)), key


def weights():
    """A flat state dict of tensors, as every format holds it: several dtypes, 0-dim, empty."""
    generator = torch.Generator().manual_seed(0)
    return {
        "embed.weight": torch.arange(4096, dtype=torch.float32).reshape(64, 64) + 0.5,
        "layers.0.weight": torch.randn(48, 64, generator=generator).to(torch.bfloat16),
        "layers.0.bias": torch.randn(48, generator=generator).half(),
        "layers.0.step": torch.tensor(7, dtype=torch.int64),
        "mask": torch.rand(5, 3, generator=generator) > 0.5,
        "empty": torch.empty(0, 4),
    }


def write(kind, tensors, path):
    """`tensors` in the format `kind`, by the library's writers."""
    if kind == "torch":
        torch_ext.save(tensors, path)
    elif kind == "dcp":
        save_dcp(tensors, path)
    elif kind == "safetensors":
        torch_ext.save(tensors, path, format="safetensors", metadata={"note": "cli"})
    elif kind == "safetensors_folder":
        torch_ext.save(tensors, path, format="safetensors", max_shard_size="20KB")
    return path


def upstream_read(kind, path):
    """What upstream's own readers read of a file or folder of `kind`."""
    if kind == "torch":
        return torch.load(path, weights_only=True)
    if kind == "dcp":
        from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no process group
            dcp_to_torch_save(path, path.parent / "upstream.pt")
        state = torch.load(path.parent / "upstream.pt", weights_only=True)
        (path.parent / "upstream.pt").unlink()
        return state
    if kind == "safetensors":
        return safetensors.torch.load_file(path)
    index = json.loads((path / "model.safetensors.index.json").read_text())
    state = {}
    for shard in sorted(set(index["weight_map"].values())):
        state.update(safetensors.torch.load_file(path / shard))
    return state


NAMES = {"torch": "w.pt", "dcp": "w_dcp", "safetensors": "w.safetensors", "safetensors_folder": "w_folder"}
FORMATS = {"torch": "TorchSave", "dcp": "Dcp", "safetensors": "Safetensors", "safetensors_folder": "SafetensorsFolder"}


def flip_a_bit_in(path, pattern):
    """Flips one bit inside the bytes `pattern` wherever they are under `path`; returns the file changed."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    for file in files:
        data = bytearray(file.read_bytes())
        at = data.find(pattern)
        if at >= 0:
            data[at + len(pattern) // 2] ^= 0x08
            file.write_bytes(bytes(data))
            return file
    raise AssertionError(f"no file under {path} holds the pattern")


# info

@pytest.mark.parametrize("kind", list(NAMES))
def test_info_shows_the_format_the_tree_the_totals_and_the_metadata(kind, tmp_path):
    tensors = weights()
    path = write(kind, tensors, tmp_path / NAMES[kind])
    report = cli_json("info", path)
    assert report["format"] == FORMATS[kind]
    assert report["path"] == str(path)
    entries = {entry["key"]: entry for entry in report["entries"]}
    assert sorted(entries) == sorted(tensors)
    for key, tensor in tensors.items():
        assert entries[key]["kind"] == "tensor"
        assert entries[key]["dtype"] == str(tensor.dtype).removeprefix("torch.")
        assert entries[key]["shape"] == list(tensor.shape)
        assert entries[key]["bytes"] == tensor.nbytes
    assert report["totals"]["tensors"] == len(tensors)
    assert report["totals"]["tensor_bytes"] == sum(t.nbytes for t in tensors.values())
    assert report["totals"]["disk_bytes"] >= report["totals"]["tensor_bytes"]
    if kind == "safetensors":
        assert report["metadata"] == {"note": "cli", "format": "pt"}
    if kind == "safetensors_folder":
        assert len(report["metadata"]["shards"]) > 1
        assert report["metadata"]["total_size"] == report["totals"]["tensor_bytes"]

    text = cli("info", path)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"{path}: a ")
    assert f"{len(tensors)} tensors" in text.stdout
    # A tree: `layers` holds `0`, which holds the weight, its dtype and shape on its line.
    lines = text.stdout.splitlines()
    layers = next(i for i, line in enumerate(lines) if line.startswith("layers "))
    assert lines[layers + 1].startswith("  0 ")
    weight = next(line for line in lines if line.startswith("    weight "))
    assert "bfloat16" in weight and "[48, 64]" in weight


def test_info_of_a_training_checkpoint_lists_its_values_and_reads_no_tensor(tmp_path):
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optim": optimizer.state_dict(), "step": 100}
    torch_ext.save(state, tmp_path / "train.pt")
    save_dcp(state, tmp_path / "train_dcp")
    for path in (tmp_path / "train.pt", tmp_path / "train_dcp"):
        entries = {entry["key"]: entry for entry in cli_json("info", path)["entries"]}
        assert entries["step"] == {"key": "step", "path": ["step"], "kind": "value", "type": "int", "value": "100"}
        assert entries["optim.state.0.exp_avg"]["shape"] == [3, 4]
        assert entries["optim.param_groups.0.lr"]["value"] == "0.001"
        assert entries["model.weight"]["path"] == ["model", "weight"]
    # Unverified: a tensor's damage does not stop info, which reads no tensor.
    flip_a_bit_in(tmp_path / "train.pt", raw(state["model"]["weight"]).numpy().tobytes())
    assert cli("info", tmp_path / "train.pt").returncode == 0


def test_info_of_a_manager_root_lists_its_steps_and_cleans_nothing(tmp_path):
    root = tmp_path / "run"
    with torch_ext.CheckpointManager(root) as manager:
        for step in (10, 20):
            stage, commit = manager.save(step, {"w": torch.full((256,), float(step))})
            commit.wait()
    leftover = root / "step_30"
    leftover.mkdir()
    (leftover / "checkpoint_0.pt").write_bytes(b"partial")
    report = cli_json("info", root)
    assert report["format"] == "ManagerRoot"
    assert [(s["step"], s["committed"], s["world_size"]) for s in report["steps"]] == [
        (10, True, 1), (20, True, 1), (30, False, None)]
    assert report["steps"][0]["files"] == [str(root / "step_10" / "checkpoint_0.pt")]
    assert report["steps"][0]["bytes"] > 1024 and report["steps"][2]["bytes"] == len(b"partial")
    assert report["latest_committed"] == 20
    assert leftover.is_dir()  # info constructs no manager, which would remove it
    text = cli("info", root).stdout
    assert "latest committed step: 20" in text
    assert any(line.split()[:2] == ["30", "no"] for line in text.splitlines())


# verify

@pytest.mark.parametrize("kind", list(NAMES))
def test_verify_holds_for_a_good_checkpoint_and_names_a_flipped_bit(kind, tmp_path):
    tensors = weights()
    path = write(kind, tensors, tmp_path / NAMES[kind])
    good = cli("verify", path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.startswith(f"ok: {path}: {len(tensors)} entries verified")

    damaged = flip_a_bit_in(path, raw(tensors["embed.weight"]).numpy().tobytes())
    bad = cli("verify", path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert bad.stdout.startswith(f"FAILED: {path}: 1 of its entries fail")
    failure = bad.stdout.splitlines()[1]
    assert damaged.name in failure and "embed.weight" in failure and "CRC32" in failure, failure
    report = cli_json("verify", path, status=1)
    assert report["ok"] is False and report["failure_count"] == 1 and report["verified"] == len(tensors) - 1


def test_verify_says_what_nothing_could_check(tmp_path):
    safetensors.torch.save_file(weights(), tmp_path / "hub.safetensors")
    result = cli("verify", tmp_path / "hub.safetensors")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 entries verified" in result.stdout and "6 tensors carry no checksum" in result.stdout


def test_verify_checks_every_committed_step_of_a_manager_root(tmp_path):
    root = tmp_path / "run"
    with torch_ext.CheckpointManager(root) as manager:
        for step in (1, 2):
            stage, commit = manager.save(step, {"w": torch.arange(1000.0) + step})
            commit.wait()
    assert cli("verify", root).returncode == 0
    (root / "step_3").mkdir()  # uncommitted: not checked
    flip_a_bit_in(root / "step_2" / "checkpoint_0.pt", raw(torch.arange(1000.0) + 2).numpy().tobytes())
    result = cli("verify", root)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("step 1: ok:") for line in lines)
    assert any(line.startswith("step 2: FAILED:") for line in lines)
    assert "step 3: not committed, not checked" in lines
    assert str(root / "step_2" / "checkpoint_0.pt") in result.stdout


@pytest.mark.parametrize("command", ["info", "verify", "convert"])
def test_an_unreadable_path_is_one_line_naming_it_and_exit_2(command, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    (tmp_path / "empty").mkdir()
    for path in (garbage, tmp_path / "missing.pt", tmp_path / "empty"):
        args = [command, path] + ([tmp_path / "out.pt"] if command == "convert" else [])
        result = cli(*args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith(f"torch_ext {command}: error: "), result.stderr
        assert len(result.stderr.splitlines()) == 1 and str(path) in result.stderr, result.stderr
    debug = cli(*([command, garbage, "--debug"] + ([tmp_path / "out.pt"] if command == "convert" else [])))
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr


# convert

PAIRS = [(a, b) for a in ("torch", "dcp", "safetensors") for b in ("torch", "dcp", "safetensors") if a != b]


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_every_pair_of_formats_round_trips(first, second, tmp_path):
    tensors = weights()
    source = write(first, tensors, tmp_path / NAMES[first])
    there = tmp_path / ("there_" + NAMES[second])
    back = tmp_path / ("back_" + NAMES[first])
    result = cli("convert", source, there, "--to", second)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_bitwise(tensors, upstream_read(second, there))
    assert_bitwise(tensors, torch_ext.load(there))
    result = cli("convert", there, back, "--to", first)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_bitwise(tensors, upstream_read(first, back))
    same = cli("diff", source, back)
    assert same.returncode == 0, same.stdout + same.stderr
    # Ours, verified: every checksum of the written files holds.
    assert cli("verify", there).returncode == 0


def test_convert_to_a_sharded_folder_with_its_index(tmp_path):
    tensors = {f"layers.{i}.weight": torch.randn(64, 64) for i in range(6)} | {"norm": torch.ones(64)}
    torch_ext.save(tensors, tmp_path / "w.pt")
    result = cli("convert", tmp_path / "w.pt", tmp_path / "out", "--to", "safetensors", "--max-shard-size", "40KB")
    assert result.returncode == 0, result.stdout + result.stderr
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert sorted(index["weight_map"]) == sorted(tensors)
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) == 3  # two 16 KiB tensors a shard, the norm with the last two
    assert index["metadata"]["total_size"] == sum(t.nbytes for t in tensors.values())
    for shard in shards:
        assert (tmp_path / "out" / shard).stat().st_size <= 40_000 + 4096
    assert_bitwise(tensors, upstream_read("safetensors_folder", tmp_path / "out"))
    for bad in (["--max-shard-size", "5XB"], ["--max-shard-size", "1GB", "--to", "torch"]):
        refused = cli("convert", tmp_path / "w.pt", tmp_path / "out2", *bad)
        assert refused.returncode == 2 and not (tmp_path / "out2").exists(), refused.stderr
    refused = cli("convert", tmp_path / "w.pt", tmp_path / "w.pt")
    assert refused.returncode == 2 and "is the source itself" in refused.stderr
    # A folder of another kind of checkpoint is left as it is; one of the same kind is replaced.
    save_dcp(tensors, tmp_path / "dcp")
    refused = cli("convert", tmp_path / "w.pt", tmp_path / "dcp", "--to", "safetensors")
    assert refused.returncode == 2 and "holds a DCP checkpoint" in refused.stderr, refused.stderr
    assert sorted(p.name for p in (tmp_path / "dcp").iterdir()) == [".metadata", "__0_0.distcp"]
    again = cli("convert", tmp_path / "w.pt", tmp_path / "out", "--to", "safetensors", "--max-shard-size", "20KB")
    assert again.returncode == 0, again.stderr
    assert_bitwise(tensors, upstream_read("safetensors_folder", tmp_path / "out"))


def test_convert_of_a_training_checkpoint_keys_and_what_safetensors_cannot_hold(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optim": optimizer.state_dict(), "step": 100}
    torch_ext.save(state, tmp_path / "train.pt")

    refused = cli("convert", tmp_path / "train.pt", tmp_path / "w.safetensors")
    assert refused.returncode == 2
    assert "holds 'optim.param_groups.0." in refused.stderr and "which is no tensor" in refused.stderr
    assert "--keys" in refused.stderr
    assert not (tmp_path / "w.safetensors").exists()

    result = cli("convert", tmp_path / "train.pt", tmp_path / "w.safetensors", "--keys", "model")
    assert result.returncode == 0, result.stderr
    assert_bitwise({f"model.{k}": v for k, v in state["model"].items()},
                   safetensors.torch.load_file(tmp_path / "w.safetensors"))
    unknown = cli("convert", tmp_path / "train.pt", tmp_path / "x.pt", "--keys", "model", "nowhere")
    assert unknown.returncode == 2 and "'nowhere'" in unknown.stderr

    # The whole state into DCP, streamed: upstream's dcp.load reads it back with its nesting and values.
    result = cli("convert", tmp_path / "train.pt", tmp_path / "train_dcp", "--to", "dcp", "--batch-size", "1KiB")
    assert result.returncode == 0, result.stderr
    loaded = upstream_read("dcp", tmp_path / "train_dcp")
    assert loaded["step"] == 100
    assert loaded["optim"]["param_groups"][0]["lr"] == state["optim"]["param_groups"][0]["lr"]
    # Keyed by str, as upstream's flattening keys every dict (dcp.save does the same).
    assert torch.equal(loaded["optim"]["state"]["0"]["exp_avg"], state["optim"]["state"][0]["exp_avg"])
    assert cli("diff", tmp_path / "train.pt", tmp_path / "train_dcp").returncode == 0

    # And back to torch, streamed: the nesting and values the library's load gives the DCP folder.
    for keys in ([], ["model", "optim.param_groups", "step"]):
        keyed = ["--keys", *keys] if keys else []
        result = cli("convert", tmp_path / "train_dcp", tmp_path / "back.pt", "--batch-size", "1KiB", *keyed)
        assert result.returncode == 0, result.stderr
        expected = torch_ext.load(tmp_path / "train_dcp", keys=keys or None)
        assert_same_state(expected, torch.load(tmp_path / "back.pt", weights_only=True))
        assert_same_state(expected, torch_ext.load(tmp_path / "back.pt"))


@pytest.mark.timeout(600)
def test_convert_of_an_upstream_fsdp2_checkpoint_equals_upstreams_consolidation(tmp_path):
    from torch.distributed.checkpoint._consolidate_hf_safetensors import consolidate_safetensors_files

    torchrun(FSDP_SCRIPT, 2, tmp_path, "--mib", "2", timeout=300)
    (tmp_path / "upstream").mkdir()
    consolidate_safetensors_files(str(tmp_path / "hf_sharded"), str(tmp_path / "upstream"),
                                  json.loads((tmp_path / "mapping.json").read_text()))
    upstream = safetensors.torch.load_file(tmp_path / "upstream" / "model-00001-of-00001.safetensors")
    assert {t.dtype for t in upstream.values()} == {torch.float32, torch.bfloat16}
    chunked = [e for e in cli_json("info", tmp_path / "dcp")["entries"] if e.get("chunks", 1) == 2]
    assert len(chunked) == len(upstream)  # every tensor saved by both ranks

    result = cli("convert", tmp_path / "dcp", tmp_path / "ours", "--to", "safetensors")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_bitwise(upstream, safetensors.torch.load_file(tmp_path / "ours" / "model.safetensors"))
    result = cli("convert", tmp_path / "dcp", tmp_path / "sharded", "--max-shard-size", "300KB",
                 "--to", "safetensors")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_bitwise(upstream, upstream_read("safetensors_folder", tmp_path / "sharded"))
    assert cli("diff", tmp_path / "dcp", tmp_path / "upstream").returncode == 0


# The process's own peak (VmHWM, of its memory since exec): ru_maxrss keeps the high-water mark of the process
# it was forked from, here the test's, which holds the checkpoint it wrote.
PEAK_RSS = """
import json, re, sys
from torch_ext.cli import main
status = main(sys.argv[1:])
with open("/proc/self/status") as status_file:
    peak = int(re.search(r"VmHWM:\\s*(\\d+) kB", status_file.read()).group(1)) * 1024
print(json.dumps({"status": status, "peak": peak}))
"""


def peak_rss(*args):
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, *map(str, args)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["status"] == 0, result.stdout + result.stderr
    return report["peak"]


def test_a_conversion_that_fails_midway_leaves_no_destination(tmp_path):
    tensors = {f"layers.{i}.weight": torch.full((4096,), float(i)) for i in range(8)}
    save_dcp(tensors, tmp_path / "dcp")
    damaged = flip_a_bit_in(tmp_path / "dcp", raw(tensors["layers.6.weight"]).numpy().tobytes())
    before = sorted(tmp_path.iterdir())
    # Batches of one tensor: the damaged one is read after the first ones are written.
    result = cli("convert", tmp_path / "dcp", tmp_path / "out.pt", "--batch-size", "16KiB")
    assert result.returncode == 2, result.stdout + result.stderr
    *progress, error = result.stderr.splitlines()
    # Streamed: the six tensors before it were read and written (a progress line each) before it failed.
    assert progress[-1].endswith("96.0 KiB of 128.0 KiB (70%)"), result.stderr
    assert error.startswith("torch_ext convert: error: "), result.stderr
    assert damaged.name in error and "layers.6.weight" in error and "CRC32" in error, error
    assert sorted(tmp_path.iterdir()) == before


def save_as_two_ranks(tensors, folder):
    """`tensors` saved as two ranks save them sharded along dim 0 (FSDP2's layout: each rank's half an item of
    its own, in its own data file), by upstream's planner and FileSystemWriter, one process playing both ranks."""
    from torch.distributed.checkpoint import FileSystemWriter
    from torch.distributed.checkpoint.default_planner import DefaultSavePlanner
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, MetadataIndex, TensorProperties
    from torch.distributed.checkpoint.planner import SavePlan, TensorWriteData, WriteItem, WriteItemType

    def half(tensor, rank):
        start = rank * (tensor.shape[0] // 2)
        size = tensor.shape[0] // 2 if rank == 0 else tensor.shape[0] - start
        return torch.Size([start] + [0] * (tensor.dim() - 1)), torch.Size([size, *tensor.shape[1:]])

    class HalfPlanner(DefaultSavePlanner):
        def __init__(self, rank):
            super().__init__()
            self.rank = rank

        def create_local_plan(self):
            items = []
            for key, tensor in self.state_dict.items():
                offsets, sizes = half(tensor, self.rank)
                items.append(WriteItem(
                    index=MetadataIndex(key, offsets), type=WriteItemType.SHARD,
                    tensor_data=TensorWriteData(ChunkStorageMetadata(offsets, sizes),
                                                TensorProperties.create_from_tensor(tensor), tensor.shape)))
            self.plan = SavePlan(items, planner_data=self.mappings)
            return self.plan

        def resolve_data(self, item):
            return self.state_dict[item.index.fqn].narrow(0, item.index.offset[0], item.tensor_data.chunk.sizes[0])

    planners = [HalfPlanner(rank) for rank in range(2)]
    writers = [FileSystemWriter(folder) for _ in range(2)]
    for rank in range(2):
        writers[rank].set_up_storage_writer(rank == 0, rank=rank)
        planners[rank].set_up_planner(tensors, storage_meta=writers[rank].storage_meta(), is_coordinator=rank == 0)
    plans = [writers[rank].prepare_local_plan(planners[rank].create_local_plan()) for rank in range(2)]
    plans, metadata = planners[0].create_global_plan(plans)
    plans = writers[0].prepare_global_plan(plans)
    results = []
    for rank in range(2):
        written = writers[rank].write_data(planners[rank].finish_plan(plans[rank]), planners[rank])
        written.wait()
        results.append(written.value())
    writers[0].finish(metadata=metadata, results=results)


@pytest.mark.timeout(600)
def test_a_streaming_conversion_holds_a_batch_not_the_checkpoint(tmp_path):
    mib = 1 << 20
    tensors = {f"layers.{i}.weight": torch.full((mib // 4,), float(i)) for i in range(192)}  # 192 MiB
    save_dcp(tensors, tmp_path / "dcp")
    save_as_two_ranks(tensors, tmp_path / "dcp_2_ranks")
    assert all(e["chunks"] == 2 for e in cli_json("info", tmp_path / "dcp_2_ranks")["entries"])
    del tensors
    baseline = peak_rss("info", tmp_path / "dcp", "--json")
    conversions = [("dcp", "safetensors", "out"), ("dcp", "dcp", "out_dcp"), ("dcp", "torch", "out.pt"),
                   ("dcp_2_ranks", "torch", "out_2_ranks.pt"), ("out", "torch", "out_safetensors.pt")]
    for source, to, name in conversions:
        peak = peak_rss("convert", tmp_path / source, tmp_path / name, "--to", to, "--batch-size", "8MiB")
        # Batches of 8 MiB: a few of them above what listing takes, not the 192 MiB.
        assert peak - baseline < 64 * mib, (source, to, peak, baseline)
    assert cli("diff", tmp_path / "dcp", tmp_path / "out").returncode == 0
    for name in ("out.pt", "out_2_ranks.pt", "out_safetensors.pt"):
        converted = torch.load(tmp_path / name, weights_only=True, mmap=True)
        assert sorted(converted) == sorted(f"layers.{i}.weight" for i in range(192)), name
        for i in range(192):
            assert torch.equal(converted[f"layers.{i}.weight"], torch.full((mib // 4,), float(i))), (name, i)


# diff

def test_diff_names_keys_dtypes_shapes_and_the_largest_difference(tmp_path):
    a = weights()
    b = dict(a)
    b["embed.weight"] = a["embed.weight"].clone()
    b["embed.weight"][3, 5] += 0.25
    b["embed.weight"][7, 1] -= 0.5
    b["layers.0.bias"] = a["layers.0.bias"].float()
    b["mask"] = a["mask"].reshape(3, 5)
    b["layers.0.step"] = torch.tensor(0, dtype=torch.int64)
    del b["empty"]
    b["extra"] = torch.zeros(2)
    zeros = {"z": torch.zeros(3)}
    torch_ext.save(a, tmp_path / "a.pt")
    torch_ext.save(b, tmp_path / "b.safetensors", format="safetensors")
    report = cli_json("diff", tmp_path / "a.pt", tmp_path / "b.safetensors", status=1)
    assert report["only_in_a"] == ["empty"] and report["only_in_b"] == ["extra"]
    assert sorted(item["key"] for item in report["mismatched"]) == ["layers.0.bias", "mask"]
    different = {item["key"]: item["max_abs_diff"] for item in report["different"]}
    assert different == {"embed.weight": 0.5, "layers.0.step": 7.0}
    assert report["identical"] == 1 and report["same"] is False

    torch_ext.save(zeros, tmp_path / "z.pt")
    torch_ext.save({"z": -torch.zeros(3)}, tmp_path / "negative_zero.pt")
    bits = cli("diff", tmp_path / "z.pt", tmp_path / "negative_zero.pt")
    assert bits.returncode == 1 and "differs: z: in bits only" in bits.stdout
    text = cli("diff", tmp_path / "a.pt", tmp_path / "b.safetensors").stdout
    assert "only in A: empty" in text and "differs: embed.weight: max |A - B| 0.5" in text
    # A file and its conversion hold the same.
    assert cli("convert", tmp_path / "a.pt", tmp_path / "a_dcp", "--to", "dcp").returncode == 0
    same = cli("diff", tmp_path / "a.pt", tmp_path / "a_dcp")
    assert same.returncode == 0 and "6 entries compared, 6 identical" in same.stdout


# How it runs

def test_a_progress_bar_on_a_terminal_and_plain_lines_otherwise(tmp_path):
    torch_ext.save({f"t{i}": torch.randn(256, 256) for i in range(8)}, tmp_path / "w.pt")
    plain = cli("convert", tmp_path / "w.pt", tmp_path / "plain.safetensors", "--batch-size", "256KiB")
    assert plain.returncode == 0, plain.stderr
    assert plain.stderr.splitlines()[-1] == f"convert {tmp_path / 'w.pt'}: 2.0 MiB of 2.0 MiB (100%)"
    primary, secondary = pty.openpty()
    # A terminal of 24 rows and 100 columns: a pty has none, and tqdm draws a bar as wide as its terminal.
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        process = subprocess.run(
            [sys.executable, "-m", "torch_ext", "convert", str(tmp_path / "w.pt"), str(tmp_path / "tty.safetensors"),
             "--batch-size", "256KiB"], stdout=subprocess.DEVNULL, stderr=secondary, timeout=TIMEOUT_S)
        os.close(secondary)
        secondary = -1
        shown = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal's other side is closed: all is read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    assert process.returncode == 0
    assert b"\r" in shown and b"100%|" in shown, shown  # tqdm's bar, redrawn in place


def run_script(*args):
    """The console script, `torch_ext ARGS`, in a new process, as a user runs it."""
    script = shutil.which("torch_ext", path=os.path.dirname(sys.executable))
    assert script is not None, "the console script is not installed beside this python"
    return subprocess.run([script, *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT_S)


def test_the_console_script_and_python_m_run_as_main_does_with_its_exit_statuses(tmp_path):
    tensors = weights()
    path = write("torch", tensors, tmp_path / "w.pt")
    by_script = run_script("info", path, "--json")
    assert by_script.returncode == 0, by_script.stderr
    by_module = subprocess.run([sys.executable, "-m", "torch_ext", "info", str(path), "--json"],
                               capture_output=True, text=True, timeout=TIMEOUT_S)
    assert by_module.returncode == 0, by_module.stderr
    assert json.loads(by_script.stdout) == json.loads(by_module.stdout) == cli_json("info", path)
    # 0 for a good checkpoint, 1 for a damaged one, 2 for one it cannot read, with what main prints.
    assert run_script("verify", path).returncode == 0
    flip_a_bit_in(path, raw(tensors["embed.weight"]).numpy().tobytes())
    damaged = run_script("verify", path)
    assert damaged.returncode == 1 and damaged.stdout == cli("verify", path).stdout
    missing = run_script("info", tmp_path / "missing.pt")
    assert missing.returncode == 2 and missing.stderr == cli("info", tmp_path / "missing.pt").stderr
    usage = run_script()
    assert usage.returncode == 2 and "COMMAND" in usage.stderr
    helped = run_script("--help")
    assert helped.returncode == 0 and all(name in helped.stdout for name in ("info", "verify", "convert", "diff"))
