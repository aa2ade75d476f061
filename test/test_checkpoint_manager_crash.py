"""Crash-consistent resume, bitwise: a training run checkpointed through
torch_ext.CheckpointManager, killed with SIGKILL again and again (before,
during and after its writes, in mid-retention, and at random moments),
restarted each time from the latest committed step, ends with the very
parameters of a run that was never interrupted."""

import json
import os
import subprocess
import sys
import textwrap

import torch

import torch_ext

TIMEOUT_S = 600

# One process per life of the run. The parent imports torch and torch_ext
# once and forks each life, which then builds its model, optimizer and
# manager from nothing and resumes from the disk alone: a restart without
# paying for the imports each time. The parent only imports, and runs no
# torch code, so the children fork from a process without threads.
DRIVER = textwrap.dedent("""
    import json, os, random, signal, sys, threading, time
    import torch, torch_ext
    import torch._dynamo  # the first optimizer step imports it: once here, not in every life

    TOTAL_STEPS, EVERY = 240, 4
    root, reference_root, out, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

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
                time.sleep(plan["delay"])  # anywhere in staging, writing, committing, retention
                die()
            stage_future.wait()
            if phase == "committed":
                commit_future.wait()
                die()
            if phase == "retention":
                kill_when(lambda: len(uncommitted(root)) > 0)  # a step un-committed, not yet removed
                manager.wait_until_finished()
                die()
            if phase == "external":
                # Progress stops here, so that every life is killed before the
                # run ends; the parent's kill lands wherever this life got to.
                time.sleep(600)
        manager.close()
        if result is not None:
            torch.save(model.state_dict(), result)

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

    rng = random.Random(seed)
    run_life(reference_root, None, os.path.join(out, "reference.pt"))
    # At most 2 saves a life: 26 lives end before the run's 60 saves do.
    plans = [{"phase": phase, "save": rng.choice([1, 2]), "delay": rng.uniform(0, 0.03)}
             for phase in ["before", "writing", "delay", "committed", "retention"] * 4]
    plans += [{"phase": "external", "save": 2, "after": rng.uniform(0.02, 0.5)} for _ in range(6)]
    rng.shuffle(plans)
    kills, leftovers = [], 0
    for plan in plans:
        ended = run_life(root, plan, external_kill_after=plan.get("after"))
        if ended == "killed":
            kills.append(plan["phase"])
        if os.path.isdir(root) and (uncommitted(root) or any(
                temporaries(os.path.join(root, n)) for n in os.listdir(root))):
            leftovers += 1
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


def test_a_run_killed_at_random_points_resumes_to_the_same_parameters_bitwise(tmp_path):
    root, reference_root, out = tmp_path / "ckpt", tmp_path / "reference", tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.run(
        [sys.executable, "-c", DRIVER, str(root), str(reference_root), str(out), "20240611"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    report = json.loads((out / "report.json").read_text())
    assert len(report["kills"]) >= 20, report
    assert {"before", "writing", "delay", "committed", "retention", "external"} <= set(report["kills"]), report
    # Some kills did land in mid-write or mid-delete: the resume had something to clean.
    assert report["kills_leaving_leftovers"] >= 1, report

    reference = torch.load(out / "reference.pt", weights_only=True)
    resumed = torch.load(out / "resumed.pt", weights_only=True)
    assert list(reference) == list(resumed)
    for name in reference:
        assert torch.equal(reference[name], resumed[name]), name

    # As the last life left it: two committed steps, nothing else.
    assert sorted(os.listdir(root)) == ["step_236", "step_240"]
    assert temporaries_under(root) == []
    assert torch_ext.CheckpointManager(root).all_steps() == [236, 240]
