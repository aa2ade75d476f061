"""State dicts of a training run, as the checkpoint tests save and load them,
and a deep comparison that checks types, tensor layout and storage sharing."""

from __future__ import annotations

import collections
from typing import Any

import torch

# Every dtype torch.save writes.
DTYPES = [
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.complex64, torch.complex128,
    torch.bool, torch.int8, torch.int16, torch.int32, torch.int64,
    torch.uint8, torch.uint16, torch.uint32, torch.uint64, torch.float8_e4m3fn, torch.float8_e5m2,
]


class TiedModel(torch.nn.Module):
    """An embedding, a BatchNorm and a head tied to the embedding."""

    def __init__(self, vocab: int = 16, width: int = 8) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, width)
        self.body = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.BatchNorm1d(width), torch.nn.ReLU())
        self.head = torch.nn.Linear(width, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.embed(tokens)))


def train_steps(model, optimizer, scheduler=None, steps: int = 3, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        tokens = torch.randint(0, 16, (32,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(tokens), tokens)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def tensor_of(dtype: torch.dtype, shape=(2, 3)) -> torch.Tensor:
    values = torch.arange(1, 1 + torch.Size(shape).numel(), dtype=torch.float32).reshape(shape)
    if dtype.is_floating_point and dtype.itemsize == 1:  # float8: exact small values
        return (values / 8).to(dtype)
    if dtype in (torch.uint16, torch.uint32, torch.uint64):  # no arange, few ops on CPU
        return torch.tensor(values.tolist(), dtype=torch.int64).to(dtype)
    return values.to(dtype)


def training_state() -> dict[str, Any]:
    """What a training run checkpoints, with every kind of value the file layer carries."""
    torch.manual_seed(0)
    model = TiedModel()
    adamw = torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.8, 0.9))
    scheduler = torch.optim.lr_scheduler.StepLR(adamw, step_size=2, gamma=0.5)
    train_steps(model, adamw, scheduler)
    sgd_model = TiedModel()
    sgd = torch.optim.SGD(sgd_model.parameters(), lr=0.1, momentum=0.9)
    train_steps(sgd_model, sgd)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    return {
        "model": model.state_dict(),
        "optimizer": adamw.state_dict(),
        "scheduler": scheduler.state_dict(),
        "sgd": sgd.state_dict(),
        "rng": torch.get_rng_state(),
        "dtypes": {str(dtype): tensor_of(dtype) for dtype in DTYPES},
        "shapes": {"scalar": torch.tensor(3.5), "empty": torch.empty(0, 4), "size": torch.Size([4, 6])},
        "views": {"base": base, "column": base[:, 2], "transposed": base.t(), "slice": base[1:3, 2:5]},
        "nested": (1, (2.5, None, "three"), [True, {4: -5, 6.5: "x", False: (2**40, -(2**63))}]),
        "int_keys": {0: {"step": 7}, 1: [collections.OrderedDict(a=1)]},
        "epoch": 3,
    }


def storage_bytes(tensor: torch.Tensor) -> torch.Tensor:
    """All of a tensor's storage, as bytes."""
    return torch.empty(0, dtype=torch.uint8).set_(tensor.untyped_storage())


def tensors_in(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for item in value.values() for t in tensors_in(item)]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in tensors_in(item)]
    return []


def sharing(value: Any) -> list[int]:
    """For each tensor in order, the index of the first tensor with its storage."""
    first: dict[int, int] = {}
    return [first.setdefault(t.untyped_storage().data_ptr(), i) for i, t in enumerate(tensors_in(value))]


def assert_same(expected: Any, actual: Any, where: str = "") -> None:
    """Equal values of the same types; tensors bitwise, with dtype, shape,
    strides and offset; OrderedDicts with their attributes; then the same
    storage sharing across the whole value."""
    _assert_same(expected, actual, where)
    assert sharing(expected) == sharing(actual), f"{where}: storage sharing differs"


def _assert_same(expected: Any, actual: Any, where: str) -> None:
    assert type(expected) is type(actual), f"{where}: {type(expected)} != {type(actual)}"
    if isinstance(expected, torch.Tensor):
        assert (expected.dtype, expected.shape, expected.stride(), expected.storage_offset()) == (
            actual.dtype, actual.shape, actual.stride(), actual.storage_offset()), where
        assert expected.requires_grad == actual.requires_grad, where
        assert torch.equal(storage_bytes(expected), storage_bytes(actual)), f"{where}: bytes differ"
    elif isinstance(expected, dict):
        assert list(expected.keys()) == list(actual.keys()), where
        assert [type(k) for k in expected] == [type(k) for k in actual], where
        for key in expected:
            _assert_same(expected[key], actual[key], f"{where}.{key}")
        _assert_same(vars(expected) if hasattr(expected, "__dict__") else None,
                     vars(actual) if hasattr(actual, "__dict__") else None, f"{where}.__dict__")
    elif isinstance(expected, (list, tuple)):
        assert len(expected) == len(actual), where
        for i, (e, a) in enumerate(zip(expected, actual)):
            _assert_same(e, a, f"{where}[{i}]")
    else:
        assert expected == actual, f"{where}: {expected!r} != {actual!r}"
