"""Checkpoint states and helpers that the DCP tests share: a training state
of every kind of value, upstream's save and its one-process read, a pickle
that runs code, bit flips in a data file."""

import io
import os
import pathlib
import zipfile

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint._extension import ZStandard
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from state_dict_compare import assert_same_layout


def training_state(seed: int = 0) -> dict:
    """A model's and an AdamW's state after a step, with values of every kind
    a state dict holds: nested dicts, lists of tensors and of scalars,
    tuples, strings, None, bf16/int/bool, 0-dim, empty and non-contiguous
    tensors."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 3))
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 6)).sum().backward()
    optim.step()
    return {
        "model": model.state_dict(),
        "optim": optim.state_dict(),
        "extra": {
            "bf16": torch.randn(3, 4).to(torch.bfloat16),
            "int32": torch.arange(6, dtype=torch.int32),
            "bool": torch.tensor([True, False, True]),
            "scalar": torch.tensor(2.5, dtype=torch.float64),
            "empty": torch.empty(0, 3),
            "transposed": torch.arange(12.0).reshape(3, 4).t(),
            "tensors": [torch.ones(2), {"a": torch.zeros(1)}],
            "ints": [1, 2, 3],
            "pair": (torch.full((2,), 7.0), 3),
            "text": "hello",
            "nothing": None,
        },
        "step": 10 + seed,
    }


def upstream_save(state: dict, folder: pathlib.Path, thread_count: int = 1, compress: bool = False) -> None:
    extensions = [ZStandard()] if compress else None
    dcp.save(state, storage_writer=FileSystemWriter(folder, thread_count=thread_count, _extensions=extensions))


def upstream_full_state(folder: pathlib.Path, tmp_path: pathlib.Path):
    """What upstream gives of a DCP folder in one process."""
    out = tmp_path / "converted.pt"
    dcp_to_torch_save(folder, out)
    return torch.load(out, weights_only=False)


def assert_bitwise_equal(ours, theirs) -> None:
    assert_same_layout(ours, theirs, tolerance=0.0)


class Payload:
    """Unpickled by pickle.load, it runs `touch marker`."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def flip_bit(path: pathlib.Path, position: int, bit: int = 0) -> None:
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)[0]
        f.seek(position)
        f.write(bytes([byte ^ (1 << bit)]))


def record_payloads(item: bytes):
    """(start, length) of every record's data in a torch.save archive."""
    archive = zipfile.ZipFile(io.BytesIO(item))
    for info in archive.infolist():
        header = item[info.header_offset : info.header_offset + 30]
        start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
        yield start, info.file_size
