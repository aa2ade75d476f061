"""Python: create a source, wrap it, complete it, check done.

torch_ext.wrap_future on torch and on concurrent futures, beside upstream's
wrap_future (torch.distributed.checkpoint._experimental.utils) and torch's
own Future.then with a Python lambda, plus bare create-and-complete anchors.
"""

import concurrent.futures

import torch
from torch.distributed.checkpoint._experimental.utils import wrap_future as upstream_wrap_future

import torch_ext
from timing import main

TorchFuture = torch.futures.Future
ConcurrentFuture = concurrent.futures.Future
wrap_future = torch_ext.wrap_future
STAGED = {"step": 1}  # what the sources complete with: a stand-in state dict


def torch_bare(n: int) -> None:
    for _ in range(n):
        source = TorchFuture()
        source.set_result(STAGED)
        assert source.done()


def torch_then(n: int) -> None:
    for _ in range(n):
        source = TorchFuture()
        wrapped = source.then(lambda f: None)
        source.set_result(STAGED)
        assert wrapped.done()


def torch_ext_torch(n: int) -> None:
    for _ in range(n):
        source = TorchFuture()
        wrapped = wrap_future(source)
        source.set_result(STAGED)
        assert wrapped.done()


def concurrent_bare(n: int) -> None:
    for _ in range(n):
        source = ConcurrentFuture()
        source.set_result(STAGED)
        assert source.done()


def upstream_concurrent(n: int) -> None:
    for _ in range(n):
        source = ConcurrentFuture()
        wrapped = upstream_wrap_future(source)
        source.set_result(STAGED)
        assert wrapped.done()


def torch_ext_concurrent(n: int) -> None:
    for _ in range(n):
        source = ConcurrentFuture()
        wrapped = wrap_future(source)
        source.set_result(STAGED)
        assert wrapped.done()


if __name__ == "__main__":
    main(
        {
            case.__name__: case
            for case in (
                torch_bare,
                torch_then,
                torch_ext_torch,
                concurrent_bare,
                upstream_concurrent,
                torch_ext_concurrent,
            )
        }
    )
