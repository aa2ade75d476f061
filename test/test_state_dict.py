"""Training state across languages: torch_ext's C++ state dicts against DCP's.

test/cpp/state_dict_resume.cpp trains the same MLP with libtorch's optimizers
and writes {"model", "optim", "rng"} with torch_ext's C++ state dicts; Python
resumes from it with ``model.load_state_dict`` and DCP's
``set_optimizer_state_dict``, and the other way round. The next step must
match (relative error at most 1e-6), and the layout must be DCP's: the same
keys in the same order, the same Python types, the same hyperparameters.
"""

import copy
import subprocess

import pytest
import torch
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

import torch_ext
from state_dict_compare import assert_same_layout

TIMEOUT_S = 120
STEPS = 3
# C++ against Python, per tensor (norm of the difference over the norm), after
# one step from the same state or STEPS steps from the same start. SGD,
# RMSprop and Adagrad agree bitwise; libtorch's Adam computes with mul_/add_
# where Python uses lerp_ (about 1e-7 apart).
TOLERANCE = 1e-6

# The configurations state_dict_resume.cpp builds under these names. Values
# away from Python's defaults are floats, as a Python user passes them.
OPTIMIZERS = {
    "sgd": (torch.optim.SGD, {"lr": 0.1}),
    "sgd_momentum": (
        torch.optim.SGD,
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01},
    ),
    "sgd_nesterov": (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    "adam": (torch.optim.Adam, {"lr": 0.01}),
    "adam_groups": (torch.optim.Adam, {"lr": 0.01}),  # see param_groups
    "adam_amsgrad": (
        torch.optim.Adam,
        {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.01, "amsgrad": True},
    ),
    "adamw": (torch.optim.AdamW, {"lr": 0.01}),
    "rmsprop": (torch.optim.RMSprop, {"lr": 0.01}),
    "rmsprop_centered": (
        torch.optim.RMSprop,
        {"lr": 0.01, "momentum": 0.5, "centered": True, "weight_decay": 0.01},
    ),
    "adagrad": (
        torch.optim.Adagrad,
        {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1},
    ),
}


def make_model() -> torch.nn.Module:
    # BatchNorm after the ReLU: right after a Linear it would make that
    # Linear's bias gradient zero up to rounding, noise that Adam amplifies.
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3)
    )


def param_groups(name: str, model: torch.nn.Module):
    """adam_groups gives the first Linear a group of its own, with its own lr."""
    if name != "adam_groups":
        return model.parameters()
    rest = [p for module in list(model)[1:] for p in module.parameters()]
    return [{"params": model[0].parameters(), "lr": 0.02}, {"params": rest}]


def make_optimizer(name: str, model: torch.nn.Module, *, defaults: bool = False):
    """The configuration `name`; with `defaults`, Python's defaults (to load into)."""
    cls, options = OPTIMIZERS[name]
    return cls(param_groups(name, model), **({} if defaults else options))


def train_step(model, optim, x, y) -> None:
    optim.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    optim.step()


def run_cpp(cpp_build, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(cpp_build / "test" / "cpp" / "state_dict_resume"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


@pytest.fixture(scope="module", params=list(OPTIMIZERS))
def cpp_run(request, cpp_build, tmp_path_factory):
    """A C++ run of one configuration: its name and the folder of its files."""
    folder = tmp_path_factory.mktemp(request.param)
    result = run_cpp(cpp_build, "train", request.param, STEPS, folder)
    assert result.returncode == 0, result.stdout + result.stderr
    return request.param, folder


def test_cpp_checkpoint_reads_the_same_with_torch_load(cpp_run):
    _, folder = cpp_run
    ours = torch_ext.load(folder / "checkpoint.pt")
    assert_same_layout(ours, torch.load(folder / "checkpoint.pt", weights_only=True), tolerance=0.0)


def test_cpp_layout_is_dcps(cpp_run):
    """Python trains the same model with the same optimizer on the same
    batches: DCP's state dicts equal those C++ wrote, types and order included."""
    name, folder = cpp_run
    batches = torch_ext.load(folder / "batches.pt")
    model = make_model()
    model.load_state_dict(torch_ext.load(folder / "initial.pt")["model"])
    optim = make_optimizer(name, model)
    for x, y in zip(batches["x"][:STEPS], batches["y"][:STEPS]):
        train_step(model, optim, x, y)

    checkpoint = torch_ext.load(folder / "checkpoint.pt")
    assert_same_layout(checkpoint["optim"], get_optimizer_state_dict(model, optim), TOLERANCE)
    dcp_model = get_model_state_dict(model)
    assert type(checkpoint["model"]) is type(dcp_model)
    assert list(checkpoint["model"]) == list(dcp_model)
    assert_same_layout(dict(checkpoint["model"]), dict(dcp_model), TOLERANCE)


def test_cpp_checkpoint_resumes_in_python(cpp_run):
    name, folder = cpp_run
    checkpoint = torch_ext.load(folder / "checkpoint.pt")
    model = make_model()
    model.load_state_dict(checkpoint["model"])
    optim = make_optimizer(name, model, defaults=True)  # DCP takes the checkpoint's hyperparameters
    set_optimizer_state_dict(model, optim, optim_state_dict=checkpoint["optim"])
    torch.set_rng_state(checkpoint["rng"])

    batches = torch_ext.load(folder / "batches.pt")
    train_step(model, optim, batches["x"][STEPS], batches["y"][STEPS])
    after = torch_ext.load(folder / "after.pt")
    assert_same_layout(dict(after["model"]), dict(model.state_dict()), TOLERANCE)
    assert_same_layout(after["optim"], get_optimizer_state_dict(model, optim), TOLERANCE)


def python_checkpoint(name: str, folder, *, scheduler: bool = False):
    """Python trains `name` STEPS steps and writes checkpoint.pt and batch.pt
    (the next batch) with torch_ext.save; returns the model and optimizer."""
    torch.manual_seed(0)
    model = make_model()
    optim = make_optimizer(name, model)
    lr_scheduler = torch.optim.lr_scheduler.StepLR(optim, step_size=1, gamma=0.5) if scheduler else None
    for _ in range(STEPS):
        train_step(model, optim, torch.randn(16, 4), torch.randn(16, 3))
        if lr_scheduler is not None:
            lr_scheduler.step()
    state = {
        "model": get_model_state_dict(model),
        "optim": get_optimizer_state_dict(model, optim),
        "rng": torch.get_rng_state(),
    }
    torch_ext.save(state, folder / "checkpoint.pt")
    torch_ext.save({"x": torch.randn(16, 4), "y": torch.randn(16, 3)}, folder / "batch.pt")
    return model, optim


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_python_checkpoint_resumes_in_cpp(name, cpp_build, tmp_path):
    model, optim = python_checkpoint(name, tmp_path)
    result = run_cpp(
        cpp_build, "resume", name, tmp_path / "checkpoint.pt", tmp_path / "batch.pt", tmp_path / "out.pt"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = torch_ext.load(tmp_path / "out.pt")
    # What C++ loaded, read back, is what DCP wrote: values, types and order.
    assert_same_layout(out["loaded_optim"], torch_ext.load(tmp_path / "checkpoint.pt")["optim"], 0.0)

    batch = torch_ext.load(tmp_path / "batch.pt")
    train_step(model, optim, batch["x"], batch["y"])
    assert_same_layout(dict(out["model"]), dict(model.state_dict()), TOLERANCE)
    assert_same_layout(out["optim"], get_optimizer_state_dict(model, optim), TOLERANCE)
    # Python's RNG state, set in C++ and read back.
    assert torch.equal(out["rng"], torch_ext.load(tmp_path / "checkpoint.pt")["rng"])


def test_python_checkpoint_with_lr_scheduler_resumes_in_cpp(cpp_build, tmp_path):
    """An LR scheduler adds "initial_lr" to each param group: C++ ignores it
    and takes the scheduled lr."""
    model, optim = python_checkpoint("adamw", tmp_path, scheduler=True)
    result = run_cpp(
        cpp_build, "resume", "adamw", tmp_path / "checkpoint.pt", tmp_path / "batch.pt", tmp_path / "out.pt"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    saved = copy.deepcopy(torch_ext.load(tmp_path / "checkpoint.pt")["optim"])
    assert saved["param_groups"][0].pop("initial_lr") == 0.01
    out = torch_ext.load(tmp_path / "out.pt")
    assert_same_layout(out["loaded_optim"], saved, 0.0)
    assert out["loaded_optim"]["param_groups"][0]["lr"] == 0.01 * 0.5**STEPS


def test_python_hyperparameter_libtorch_lacks_is_named(cpp_build, tmp_path):
    torch.manual_seed(0)
    model = make_model()
    optim = torch.optim.Adam(model.parameters(), lr=0.01, maximize=True)
    train_step(model, optim, torch.randn(16, 4), torch.randn(16, 3))
    state = {
        "model": get_model_state_dict(model),
        "optim": get_optimizer_state_dict(model, optim),
        "rng": torch.get_rng_state(),
    }
    torch_ext.save(state, tmp_path / "checkpoint.pt")
    torch_ext.save({"x": torch.randn(16, 4), "y": torch.randn(16, 3)}, tmp_path / "batch.pt")
    result = run_cpp(
        cpp_build, "resume", "adam", tmp_path / "checkpoint.pt", tmp_path / "batch.pt", tmp_path / "out.pt"
    )
    assert result.returncode == 1
    assert (
        "error: optim_state_dict entry 'param_groups.0.maximize' is True, "
        "but libtorch's Adam supports only False" in result.stdout
    )


@pytest.mark.parametrize("seed", [0, 20240601])
def test_rng_state_is_pythons_byte_for_byte(seed, cpp_build, tmp_path):
    result = run_cpp(cpp_build, "rng", seed, tmp_path / "rng.pt")
    assert result.returncode == 0, result.stdout + result.stderr
    out = torch_ext.load(tmp_path / "rng.pt")
    torch.manual_seed(seed)
    assert out["state"].dtype == torch.uint8
    assert torch.equal(out["state"], torch.get_rng_state())
    assert torch.equal(out["draws"], torch.randn(100))
