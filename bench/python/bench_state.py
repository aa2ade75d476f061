"""The training state the checkpoint benchmarks save and load.

A transformer-like model (embedding, blocks of attention and MLP Linear
weights with biases and LayerNorms) and its AdamW state in DCP's layout
(`get_optimizer_state_dict`: state keyed by parameter name, a float32 `step`
per parameter), so that every peer, DCP included, saves the same dict.
"""

from __future__ import annotations

import math
from typing import Dict, List, Tuple

import torch

Shape = Tuple[int, ...]


def block_shapes(width: int, layer: int) -> List[Tuple[str, Shape]]:
    prefix = f"layers.{layer}"
    shapes: List[Tuple[str, Shape]] = []
    for name in ("q", "k", "v", "o"):
        shapes += [(f"{prefix}.attn.{name}.weight", (width, width)), (f"{prefix}.attn.{name}.bias", (width,))]
    for name in ("ln1", "ln2"):
        shapes += [(f"{prefix}.{name}.weight", (width,)), (f"{prefix}.{name}.bias", (width,))]
    shapes += [
        (f"{prefix}.mlp.fc1.weight", (4 * width, width)),
        (f"{prefix}.mlp.fc1.bias", (4 * width,)),
        (f"{prefix}.mlp.fc2.weight", (width, 4 * width)),
        (f"{prefix}.mlp.fc2.bias", (width,)),
    ]
    return shapes


def parameter_shapes(total_bytes: int) -> List[Tuple[str, Shape]]:
    """Float32 parameters whose weights, exp_avg and exp_avg_sq take about `total_bytes`."""
    parameters = total_bytes // (3 * 4)
    width = 1 << max(5, min(10, int(math.log2(math.sqrt(parameters / 60)))))
    per_layer = sum(math.prod(shape) for _, shape in block_shapes(width, 0))
    layers = max(1, (parameters - 256 * width) // per_layer)
    # The embedding takes the rest.
    vocab = max(256, (parameters - layers * per_layer) // width - 2)
    shapes = [("embed.weight", (vocab, width))]
    for layer in range(layers):
        shapes += block_shapes(width, layer)
    return shapes + [("norm.weight", (width,)), ("norm.bias", (width,))]


def layout(total_bytes: int) -> List[Tuple[Tuple[str, ...], Shape]]:
    """Every tensor of make_state(total_bytes): its key path and shape, in order."""
    shapes = parameter_shapes(total_bytes)
    entries = [(("model", name), shape) for name, shape in shapes]
    for name, shape in shapes:
        entries += [
            (("optim", "state", name, "step"), ()),
            (("optim", "state", name, "exp_avg"), shape),
            (("optim", "state", name, "exp_avg_sq"), shape),
        ]
    return entries


def make_state(total_bytes: int, seed: int = 0) -> dict:
    """{'model': {...}, 'optim': {'state': {...}, 'param_groups': [...]}, 'step': int}."""
    generator = torch.Generator().manual_seed(seed)
    state: dict = {}
    for path, shape in layout(total_bytes):
        parent = state
        for key in path[:-1]:
            parent = parent.setdefault(key, {})
        parent[path[-1]] = torch.tensor(100.0) if not shape else torch.randn(shape, generator=generator)
    state["optim"]["param_groups"] = [{
        "lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False,
        "maximize": False, "foreach": None, "capturable": False, "differentiable": False,
        "fused": None, "decoupled_weight_decay": True, "params": list(state["model"]),
    }]
    state["step"] = 100
    return state


def layout_lines(total_bytes: int) -> str:
    """layout() as `path dims...` lines, dict keys joined by '/', for the C++ benchmark."""
    return "".join(" ".join(["/".join(path), *map(str, shape)]) + "\n" for path, shape in layout(total_bytes))


def tensors(value) -> List[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return []
    return [tensor for item in value for tensor in tensors(item)]


def tensor_bytes(state) -> int:
    return sum(t.untyped_storage().nbytes() for t in tensors(state))


def touch(state) -> float:
    """Reads every value: the sum of every tensor."""
    return float(sum(t.sum(dtype=torch.float64) for t in tensors(state)))


def partial_keys(state: dict, fraction: float = 0.01) -> List[str]:
    """Dotted paths of model entries that hold about `fraction` of the bytes."""
    budget = fraction * tensor_bytes(state)
    keys, taken = [], 0
    for name, tensor in state["model"].items():
        if taken + tensor.nbytes <= budget:
            keys.append(f"model.{name}")
            taken += tensor.nbytes
    return keys


def describe(state: dict) -> Dict[str, int]:
    return {"bytes": tensor_bytes(state), "tensors": len(tensors(state)), "parameters": len(state["model"])}
