"""Writes fuzz_seeds/: small torch.save files of models and optimizer states
that test/cpp/checkpoint_fuzz_test.cpp mutates, and DCP folders of the same
(dcp.save) whose `.metadata` test/cpp/dcp_fuzz_test.cpp mutates. Run with the
pinned torch to remake them: `python make_fuzz_seeds.py`."""

import collections
import os
import pathlib
import shutil
import warnings

import torch
import torch.distributed.checkpoint as dcp


class TinyModel(torch.nn.Module):
    """An embedding, a BatchNorm and a head tied to the embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(4, 2)
        self.body = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
        self.head = torch.nn.Linear(2, 4, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.embed(tokens)))


def trained(optimizer_class, **options):
    torch.manual_seed(0)
    model = TinyModel()
    optimizer = optimizer_class(model.parameters(), **options)
    tokens = torch.tensor([0, 1, 2, 3])
    torch.nn.functional.cross_entropy(model(tokens), tokens).backward()
    optimizer.step()
    return model, optimizer


def main() -> None:
    out = pathlib.Path(__file__).resolve().parent / "fuzz_seeds"
    out.mkdir(exist_ok=True)
    model, adamw = trained(torch.optim.AdamW, lr=0.01)
    _, sgd = trained(torch.optim.SGD, lr=0.1, momentum=0.9, nesterov=True)
    torch.save(model.state_dict(), out / "model.pt")
    torch.save(adamw.state_dict(), out / "adamw.pt")
    torch.save({"model": model.state_dict(), "optim": sgd.state_dict(), "step": 1}, out / "training.pt")
    base = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    torch.save(
        {
            "parameter": torch.nn.Parameter(torch.ones(2)),
            "views": [base, base.t(), base[1]],
            "untyped": torch.arange(3, dtype=torch.int64).to(torch.uint16),  # _rebuild_tensor_v3
            "float8": torch.ones(2).to(torch.float8_e4m3fn),
            "size": torch.Size([2, 3]),
            "nested": (1, 2.5, None, "x", {0: True, 1.5: [collections.OrderedDict(a=1)]}),
        },
        out / "values.pt",
    )
    # Saved from inside the folder: `.metadata` records the folder as given.
    os.chdir(out)
    for name, state_dict in {
        "model.dcp": model.state_dict(),
        "training.dcp": {"model": model.state_dict(), "optim": sgd.state_dict(), "step": 1, "note": "x"},
    }.items():
        shutil.rmtree(name, ignore_errors=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # saved without a process group
            dcp.save(state_dict, checkpoint_id=name)


if __name__ == "__main__":
    main()
