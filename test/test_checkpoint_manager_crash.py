"""Crash-consistent resume, bitwise: a training run checkpointed through
CheckpointManager every 4 steps with max_to_keep=2, killed with SIGKILL
again and again (before, during and after its writes, in mid-retention, and
from outside at random moments), restarted each time from the latest
committed step, ends with the very parameters of a run that was never
interrupted, and its very optimizer state, with 2 committed steps left and
no temporary file. Once in Python (torch.optim.AdamW, an LR scheduler,
dropout), once in C++ (test/cpp/train_with_checkpoint_manager.cpp:
libtorch's Adam, dropout, torch_ext's state dicts)."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import torch

import torch_ext
from state_dict_compare import assert_same_layout

TIMEOUT_S = 600
SEED = 20240611
TOTAL_STEPS, EVERY = 240, 4
PHASES = ["before", "writing", "delay", "committed", "retention", "stop"]


def kill_plans(seed):
    """26 lives, each killed at its first or second save: 20 at a point the
    run picks itself, 6 from outside after a random time (the life stops at
    its second save to wait for it). At most 2 saves a life: every life is
    killed before the run's 60 saves are done."""
    rng = random.Random(seed)
    plans = [
        {"phase": phase, "save": rng.choice([1, 2]), "delay_ms": rng.randint(0, 30)}
        for phase in PHASES[:-1] * 4
    ]
    plans += [{"phase": "stop", "save": 2, "delay_ms": 0, "after": rng.uniform(0.02, 0.5)} for _ in range(6)]
    rng.shuffle(plans)
    return plans


# One process per life of the run. The parent imports torch and torch_ext
# once and forks each life, which then builds its model, optimizer and
# manager from nothing and resumes from the disk alone: a restart without
# paying for the imports each time. The parent only imports, and runs no
# torch code, so the children fork from a process without threads.
DRIVER = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    import torch, torch_ext
    import torch._dynamo  # the first optimizer step imports it: once here, not in every life

    root, reference_root, out, plans = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    TOTAL_STEPS, EVERY = int(sys.argv[5]), int(sys.argv[6])

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def temporaries(folder):
        try:
            return [n for n in os.listdir(folder) if n.startswith(".") and n.endswith(".tmp")]
        except FileNotFoundError:
            return []

    def uncommitted(root):
        return [n for n in os.listdir(root)
                if n.startswith("step_") and not os.path.exists(os.path.join(root, n, "commit_success.txt"))]

    def has_leftovers(root):
        return os.path.isdir(root) and bool(
            uncommitted(root) or any(temporaries(os.path.join(root, n)) for n in os.listdir(root)))

    def kill_when(condition):
        def watch():
            while not condition():
                pass
            die()
        threading.Thread(target=watch, daemon=True).start()

    def life(root, plan, result=None):
        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(128, 512), torch.nn.ReLU(), torch.nn.Dropout(0.1),
            torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 8))
        optim = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        scheduler = torch.optim.lr_scheduler.StepLR(optim, step_size=10, gamma=0.7)
        manager = torch_ext.CheckpointManager(root, max_to_keep=2)
        start = 0
        if manager.latest_step() is not None:
            state = manager.load()
            model.load_state_dict(state["model"])
            optim.load_state_dict(state["optim"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            start = state["step"]
        saves = 0
        for step in range(start + 1, TOTAL_STEPS + 1):
            x, y = torch.randn(32, 128), torch.randn(32, 8)
            loss = torch.nn.functional.mse_loss(model(x), y)
            optim.zero_grad()
            loss.backward()
            optim.step()
            scheduler.step()
            if step % EVERY:
                continue
            saves += 1
            armed = plan is not None and saves == plan["save"]
            phase = plan["phase"] if armed else None
            if phase == "before":
                die()
            if phase == "writing":
                folder = manager.step_path(step)
                kill_when(lambda: temporaries(folder) or os.path.exists(os.path.join(folder, "commit_success.txt")))
            stage_future, commit_future = manager.save(step, {
                "model": model.state_dict(), "optim": optim.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "step": step})
            if phase == "delay":
                time.sleep(plan["delay_ms"] / 1000)  # anywhere in staging, writing, committing, retention
                die()
            stage_future.wait()
            if phase == "committed":
                commit_future.wait()
                die()
            if phase == "retention":
                kill_when(lambda: len(uncommitted(root)) > 0)  # a step un-committed, not yet removed
                manager.wait_until_finished()
                die()
            if phase == "stop":
                # Progress stops here, so that every life is killed before the
                # run ends; the parent's kill lands wherever this life got to.
                time.sleep(600)
        manager.close()
        if result is not None:
            torch.save({"model": model.state_dict(), "optim": optim.state_dict()}, result)

    def run_life(root, plan, result=None, external_kill_after=None):
        pid = os.fork()
        if pid == 0:
            try:
                life(root, plan, result)
            except BaseException:
                import traceback
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        if external_kill_after is not None:
            time.sleep(external_kill_after)
            os.kill(pid, signal.SIGKILL)  # a life that already ended is a zombie: harmless
        deadline = time.monotonic() + 300
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise SystemExit("a life of the run hung")
            time.sleep(0.005)
        if os.WIFSIGNALED(status):
            assert os.WTERMSIG(status) == signal.SIGKILL, status
            return "killed"
        assert os.WEXITSTATUS(status) == 0, f"a life of the run failed: {status}"
        return "finished"

    run_life(reference_root, None, os.path.join(out, "reference.pt"))
    kills, leftovers = [], 0
    for plan in plans:
        ended = run_life(root, plan, external_kill_after=plan.get("after"))
        if ended == "killed":
            kills.append(plan["phase"])
        leftovers += has_leftovers(root)
    assert run_life(root, None, os.path.join(out, "resumed.pt")) == "finished"
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump({"kills": kills, "kills_leaving_leftovers": leftovers}, f)
""")


def temporaries_under(folder):
    return [
        os.path.join(path, name)
        for path, _, names in os.walk(folder)
        for name in names
        if name.startswith(".") and name.endswith(".tmp")
    ]


def uncommitted_or_temporary(root):
    """What a crash may leave, as the layout shows it (read before any
    manager cleans it)."""
    steps = [n for n in os.listdir(root) if n.startswith("step_")] if root.is_dir() else []
    return bool(temporaries_under(root)) or any(not (root / n / "commit_success.txt").exists() for n in steps)


def check_the_resumed_run(report, root, reference_file, resumed_file):
    assert len(report["kills"]) >= 20, report
    assert set(PHASES) <= set(report["kills"]), report
    # Some kills did land in mid-write or mid-delete: the resumes had something to clean.
    assert report["kills_leaving_leftovers"] >= 1, report

    # The parameters and the optimizer's state, {"model", "optim"}.
    reference = torch.load(reference_file, weights_only=True)
    resumed = torch.load(resumed_file, weights_only=True)
    assert list(reference) == ["model", "optim"] and reference["optim"]["state"], reference.keys()
    assert_same_layout(resumed, reference, tolerance=0.0)

    # As the last life left it: two committed steps, nothing else.
    last = TOTAL_STEPS // EVERY * EVERY
    assert sorted(os.listdir(root)) == [f"step_{last - EVERY}", f"step_{last}"]
    assert temporaries_under(root) == []
    assert torch_ext.CheckpointManager(root).all_steps() == [last - EVERY, last]


def test_a_python_run_killed_at_random_points_resumes_to_the_same_parameters_bitwise(tmp_path):
    root, reference_root, out = tmp_path / "ckpt", tmp_path / "reference", tmp_path / "out"
    out.mkdir()
    process = subprocess.run(
        [sys.executable, "-c", DRIVER, str(root), str(reference_root), str(out), json.dumps(kill_plans(SEED)),
         str(TOTAL_STEPS), str(EVERY)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )  # fmt: skip
    assert process.returncode == 0, process.stdout + process.stderr
    report = json.loads((out / "report.json").read_text())
    check_the_resumed_run(report, root, out / "reference.pt", out / "resumed.pt")


def run_cpp_life(binary, root, out, plan=None):
    """One life of the C++ run: "killed" or "finished"."""
    command = [str(binary), str(root), str(out), "--steps", str(TOTAL_STEPS), "--every", str(EVERY)]
    if plan is not None:
        command += ["--kill", f"{plan['phase']}:{plan['save']}:{plan['delay_ms']}"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        if plan is not None and "after" in plan:
            time.sleep(plan["after"])
            process.send_signal(signal.SIGKILL)
        _, err = process.communicate(timeout=TIMEOUT_S)
    finally:
        process.kill()
    if process.returncode == -signal.SIGKILL:
        return "killed"
    assert process.returncode == 0, err
    return "finished"


def test_a_cpp_run_killed_at_random_points_resumes_to_the_same_parameters_bitwise(tmp_path, cpp_build):
    binary = cpp_build / "test" / "cpp" / "train_with_checkpoint_manager"
    root, out = tmp_path / "ckpt", tmp_path / "out"
    out.mkdir()
    assert run_cpp_life(binary, tmp_path / "reference", out / "reference.pt") == "finished"
    kills, leftovers = [], 0
    for plan in kill_plans(SEED + 1):
        if run_cpp_life(binary, root, out / "unused.pt", plan) == "killed":
            kills.append(plan["phase"])
        leftovers += uncommitted_or_temporary(root)
    assert run_cpp_life(binary, root, out / "resumed.pt") == "finished"
    report = {"kills": kills, "kills_leaving_leftovers": leftovers}
    check_the_resumed_run(report, root, out / "reference.pt", out / "resumed.pt")
