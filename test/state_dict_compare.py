"""Training state dicts compared: across languages (against DCP's, within a
relative tolerance) or across runs (tolerance 0: bitwise)."""

import torch


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    difference = (actual.double() - expected.double()).norm()
    return 0.0 if difference == 0 else (difference / expected.double().norm()).item()


def assert_same_layout(ours, theirs, tolerance: float, path: str = "") -> None:
    """The same keys in the same order, the same types, equal values (tensors
    within `tolerance`, relative; steps and integers exactly)."""
    assert type(ours) is type(theirs), f"{path}: {type(ours).__name__}, expected {type(theirs).__name__}"
    if isinstance(ours, dict):
        assert list(ours) == list(theirs), f"{path}: keys {list(ours)}, expected {list(theirs)}"
        for key in ours:
            assert_same_layout(ours[key], theirs[key], tolerance, f"{path}[{key!r}]")
    elif isinstance(ours, (list, tuple)):
        assert len(ours) == len(theirs), f"{path}: {ours!r}, expected {theirs!r}"
        for i, (item, their_item) in enumerate(zip(ours, theirs)):
            assert_same_layout(item, their_item, tolerance, f"{path}[{i}]")
    elif isinstance(ours, torch.Tensor):
        assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), path
        if path.endswith("['step']") or not ours.is_floating_point():
            assert torch.equal(ours, theirs), f"{path}: {ours}, expected {theirs}"
        else:
            error = relative_error(ours, theirs)
            assert error <= tolerance, f"{path}: relative error {error:.2e}"
    else:
        assert ours == theirs, f"{path}: {ours!r}, expected {theirs!r}"
