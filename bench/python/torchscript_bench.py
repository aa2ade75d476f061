"""TorchScript: fork, wrap with torch.ops.torch_ext.wrap_future, wait;
beside fork and wait alone. The loop runs inside the scripted code."""

import torch

import torch_ext  # noqa: F401  (registers the op)
from timing import main


def stage(x: torch.Tensor) -> torch.Tensor:
    return x


@torch.jit.script
def fork_wait(x: torch.Tensor, n: int) -> None:
    for _ in range(n):
        torch.jit.wait(torch.jit.fork(stage, x))


@torch.jit.script
def fork_wrap_wait(x: torch.Tensor, n: int) -> None:
    for _ in range(n):
        torch.jit.wait(torch.ops.torch_ext.wrap_future(torch.jit.fork(stage, x)))


if __name__ == "__main__":
    x = torch.ones(1)
    main({"script_fork_wait": lambda n: fork_wait(x, n), "script_fork_wrap_wait": lambda n: fork_wrap_wait(x, n)})
