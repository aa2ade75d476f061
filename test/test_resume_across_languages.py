"""A run checkpointed through the C++ CheckpointManager resumes in Python
through torch_ext.CheckpointManager, and the other way round; the next
optimizer step matches the run's own (relative error at most 1e-6).

The C++ run is test/cpp/train_with_checkpoint_manager.cpp (libtorch's Adam,
{"model", "optim", "rng", "step"} every EVERY steps, max_to_keep=2); Python
mirrors it with torch.optim.Adam and DCP's state dicts. Python loads as a
Python user does: ``model.load_state_dict(sd["model"])`` and DCP's
``set_optimizer_state_dict(model, optim, optim_state_dict=sd["optim"])``.
"""

import os
import subprocess

import torch
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

import bounded
import torch_ext
from state_dict_compare import assert_same_layout

TIMEOUT_S = 120
# Saves at 4, 8 and 12; retention keeps 8 and 12; the run resumes at 12.
STEPS, EVERY = 12, 4
# libtorch's Adam computes with mul_/add_ where Python's uses lerp_.
TOLERANCE = 1e-6


def make_model() -> torch.nn.Module:
    """The C++ run's model, with the same parameter names."""
    return torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(128, 4)
    )


def train_step(model, optim) -> None:
    """One step as the C++ run takes it: the batch, then dropout's mask, drawn
    from the default generator."""
    x, y = torch.randn(32, 64), torch.randn(32, 4)
    optim.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    optim.step()


def run_cpp(cpp_build, root, out, steps: int) -> None:
    """The C++ run, resumed from `root`'s latest step if any, up to `steps`;
    writes its final {"model", "optim"} to `out`."""
    binary = cpp_build / "test" / "cpp" / "train_with_checkpoint_manager"
    result = subprocess.run(
        [str(binary), str(root), str(out), "--steps", str(steps), "--every", str(EVERY)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def assert_same_step(cpp_out, model, optim) -> None:
    assert_same_layout(dict(cpp_out["model"]), dict(model.state_dict()), TOLERANCE)
    assert_same_layout(cpp_out["optim"], get_optimizer_state_dict(model, optim), TOLERANCE)


def test_a_cpp_run_resumes_in_python(cpp_build, tmp_path):
    root = tmp_path / "ckpt"
    run_cpp(cpp_build, root, tmp_path / "cpp_next_step.pt", STEPS + 1)
    manager = torch_ext.CheckpointManager(root, max_to_keep=2)
    assert manager.all_steps() == [STEPS - EVERY, STEPS]

    sd = manager.load()
    assert sd["step"] == STEPS
    model = make_model()
    model.load_state_dict(sd["model"])
    optim = torch.optim.Adam(model.parameters())  # DCP takes the checkpoint's hyperparameters
    set_optimizer_state_dict(model, optim, optim_state_dict=sd["optim"])
    torch.set_rng_state(sd["rng"])
    train_step(model, optim)
    manager.close()

    assert_same_step(torch_ext.load(tmp_path / "cpp_next_step.pt"), model, optim)


def test_a_python_run_resumes_in_cpp(cpp_build, tmp_path):
    root = tmp_path / "ckpt"
    # Not the C++ run's seed: a C++ run that failed to resume would start
    # from the same parameters and batches as this one.
    torch.manual_seed(1)
    model = make_model()
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    with torch_ext.CheckpointManager(root, max_to_keep=2) as manager:
        for step in range(1, STEPS + 1):
            train_step(model, optim)
            if step % EVERY == 0:
                stage_future, commit_future = manager.save(step, {
                    "model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optim),
                    "rng": torch.get_rng_state(), "step": step})  # fmt: skip
                bounded.wait(stage_future, f"step {step}'s staging")
        bounded.wait(commit_future, "the last commit")
        manager.wait_until_finished()  # retention too
        assert manager.all_steps() == [STEPS - EVERY, STEPS]

    run_cpp(cpp_build, root, tmp_path / "cpp_next_step.pt", STEPS + 1)
    train_step(model, optim)
    assert_same_step(torch_ext.load(tmp_path / "cpp_next_step.pt"), model, optim)
