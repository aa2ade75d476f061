"""torch_ext.CheckpointManager in one process: what the Python layer adds to
the C++ manager (state dict conversion, torch futures, the GIL, stores,
options), and the crash leftovers a Python user meets."""

import collections
import datetime
import os
import threading

import pytest
import torch
import torch.distributed as dist

import bounded
import torch_ext


def wait(future):
    return bounded.wait(future, "a save's future")


def error_of(future):
    bounded.completed(future, "a save's future")
    with pytest.raises(Exception) as raised:
        future.wait()
    return str(raised.value)


def training_state(step):
    torch.manual_seed(step)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.Linear(16, 2))
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 8)).sum().backward()
    optim.step()
    return {"model": model.state_dict(), "optim": optim.state_dict(), "rng": torch.get_rng_state(), "step": step}


def assert_same(expected, actual):
    assert type(actual) is type(expected), (expected, actual)
    if isinstance(expected, torch.Tensor):
        assert expected.dtype == actual.dtype and torch.equal(expected, actual)
    elif isinstance(expected, dict):
        assert list(expected) == list(actual)
        for key in expected:
            assert_same(expected[key], actual[key])
    elif isinstance(expected, (list, tuple)):
        assert len(expected) == len(actual)
        for e, a in zip(expected, actual):
            assert_same(e, a)
    else:
        assert expected == actual


def test_a_training_state_saves_commits_and_loads_back_with_its_python_types(tmp_path):
    with torch_ext.CheckpointManager(tmp_path) as manager:
        assert manager.all_steps() == [] and manager.latest_step() is None
        states = {step: training_state(step) for step in (3, 6)}
        for step, state in states.items():
            stage_future, commit_future = manager.save(step, state)
            assert isinstance(stage_future, torch._C.Future)
            assert isinstance(commit_future, torch._C.Future)
            assert wait(commit_future) is None
        assert manager.all_steps() == [3, 6] and manager.latest_step() == 6
        loaded = manager.load()
        assert isinstance(loaded["model"], collections.OrderedDict)
        assert_same(states[6], loaded)
        assert_same(states[3], manager.load(3))
        assert manager.load(3, keys=["step"]) == {"step": 3}
        assert manager.step_path(6) == os.path.join(str(tmp_path), "step_6")
        assert manager.root == str(tmp_path)
    # What torch.load reads too.
    assert torch.load(tmp_path / "step_6" / "checkpoint_0.pt", weights_only=True)["step"] == 6


def test_options_reach_the_cpp_manager_and_default_to_its_defaults(tmp_path):
    with torch_ext.CheckpointManager(tmp_path / "all") as manager:  # max_to_keep unset: keep every step
        for step in range(1, 4):
            wait(manager.save(step, {"step": step})[1])
        manager.wait_until_finished()
        assert manager.all_steps() == [1, 2, 3]
    with torch_ext.CheckpointManager(tmp_path / "some", max_to_keep=1, keep_every_n_steps=2) as manager:
        for step in range(1, 6):
            wait(manager.save(step, {"step": step})[1])
        manager.wait_until_finished()
        assert manager.all_steps() == [2, 4, 5]
    with pytest.raises(ValueError, match="max_to_keep >= 1"):
        torch_ext.CheckpointManager(tmp_path, max_to_keep=0)
    with pytest.raises(ValueError, match="expected a c10d store for world_size 2"):
        torch_ext.CheckpointManager(tmp_path, rank=0, world_size=2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_option'"):
        torch_ext.CheckpointManager(tmp_path, no_such_option=1)
    with pytest.raises(TypeError, match="expected staging_threads to be of type int, got str"):
        torch_ext.CheckpointManager(tmp_path, staging_threads="2")


def test_the_save_options_shared_with_the_checkpointer_reach_the_cpp_manager(tmp_path):
    big = torch.arange(1 << 20, dtype=torch.float32)  # 4 MiB, over a 1 MiB budget: saved in waves
    with torch_ext.CheckpointManager(
            tmp_path, max_staging_bytes=1 << 20, staging_threads=2, writer_nice=0) as manager:
        wait(manager.save(1, {"big": big})[1])
        assert torch.equal(manager.load()["big"], big)
    with pytest.raises(ValueError, match=r"CheckpointManager expected max_staging_bytes to be 0 \(no bound\) or at least"):
        torch_ext.CheckpointManager(tmp_path, max_staging_bytes=1000)
    with pytest.raises(ValueError, match="CheckpointManager expected 0 <= writer_nice <= 19"):
        torch_ext.CheckpointManager(tmp_path, writer_nice=-1)


def test_a_value_python_cannot_convert_raises_and_the_next_save_works(tmp_path):
    manager = torch_ext.CheckpointManager(tmp_path)
    with pytest.raises(TypeError, match="'model.bad'"):
        manager.save(1, {"model": {"bad": object()}})
    wait(manager.save(1, {"step": 1})[1])
    assert manager.all_steps() == [1]


def test_saving_a_committed_step_raises_and_a_failed_commit_names_step_and_path(tmp_path):
    manager = torch_ext.CheckpointManager(tmp_path)
    wait(manager.save(1, {"step": 1})[1])
    with pytest.raises(RuntimeError, match="step 1 is already committed"):
        manager.save(1, {"step": 2})
    (tmp_path / "step_2").write_text("a file where the step's folder goes")
    error = error_of(manager.save(2, {"step": 2})[1])
    assert f"step 2 was not committed in '{tmp_path / 'step_2'}'" in error
    assert "rank 0 failed to write its file" in error
    assert manager.load() == {"step": 1}


# save() and close() wait for the previous save with the GIL released; a
# Python callback on its commit, run by the writer thread, needs the GIL. In a
# process of its own: a wait that held the GIL would stop every thread.
CALLBACKS_WHILE_THE_CALLER_SAVES_AGAIN = """
import sys, torch, torch_ext
manager = torch_ext.CheckpointManager(sys.argv[1], max_to_keep=2)
seen = []
for step in range(4):
    _, commit_future = manager.save(step, {"weight": torch.full((1000,), float(step))})
    commit_future.add_done_callback(lambda f, step=step: seen.append((step, f.value())))
manager.close()
print(seen == [(step, None) for step in range(4)], manager.all_steps())
"""


def test_callbacks_on_the_commit_future_run_python_while_the_caller_saves_again(tmp_path):
    out = bounded.run_python(CALLBACKS_WHILE_THE_CALLER_SAVES_AGAIN, tmp_path, what="saves with Python callbacks")
    assert out.split("\n")[0] == "True [2, 3]"


def test_the_store_may_be_any_torch_distributed_store(tmp_path):
    store = dist.HashStore()
    managers = [None, None]

    def construct(rank):
        managers[rank] = torch_ext.CheckpointManager(tmp_path, rank=rank, world_size=2, store=store)

    follower = threading.Thread(target=construct, args=(1,))
    follower.start()
    construct(0)
    bounded.join(follower, "rank 1's construction")
    assert managers[1] is not None, "rank 1 could not construct its manager"
    futures = [managers[rank].save(7, {"rank": rank})[1] for rank in range(2)]
    for future in futures:
        wait(future)
    assert [manager.load() for manager in managers] == [{"rank": 0}, {"rank": 1}]
    with pytest.raises(TypeError, match="expected store to be a torch.distributed.Store"):
        torch_ext.CheckpointManager(tmp_path, store="localhost:29500")


class AnnouncesWaits(dist.Store):
    """A c10d store that forwards to `inner` and sets `waiting` as it starts
    each wait: when rank 0's writer waits for rank 1 is seen from outside. A
    clone forwards to a clone of `inner`, as TCPStore's clone is a second
    connection to the same server."""

    def __init__(self, inner, waiting):
        super().__init__()
        self.inner, self.waiting, self.clones = inner, waiting, []

    def clone(self):
        clone = AnnouncesWaits(self.inner.clone(), self.waiting)
        self.clones.append(clone)  # C++ holds no Python reference: without one, its overrides go
        return clone

    def wait(self, *args):
        self.waiting.set()
        return self.inner.wait(*args)

    def set(self, *args):
        return self.inner.set(*args)

    def get(self, *args):
        return self.inner.get(*args)

    def add(self, *args):
        return self.inner.add(*args)

    def check(self, *args):
        return self.inner.check(*args)

    def compare_set(self, *args):
        return self.inner.compare_set(*args)

    def delete_key(self, *args):
        return self.inner.delete_key(*args)


def test_a_save_waiting_for_a_late_rank_does_not_hold_up_the_jobs_store(tmp_path):
    # Both ranks' managers share the job's TCPStore client, as the threads of
    # a process share the default store. Rank 0 waits for rank 1's report on
    # its own connection; on the shared one, the job's next use and rank 1's
    # report would wait behind it until the barrier timeout, and the step
    # would fail.
    store = dist.TCPStore("127.0.0.1", 0, 1, True, timeout=datetime.timedelta(seconds=bounded.TIMEOUT_S))
    waiting = threading.Event()
    shared = AnnouncesWaits(store, waiting)
    managers = [None, None]

    def construct(rank):
        managers[rank] = torch_ext.CheckpointManager(
            tmp_path, rank=rank, world_size=2, store=shared, barrier_timeout_secs=20
        )

    follower = threading.Thread(target=construct, args=(1,))
    follower.start()
    construct(0)
    bounded.join(follower, "rank 1's construction")
    assert managers[1] is not None, "rank 1 could not construct its manager"
    waiting.clear()  # rank 1 waited in its constructor for rank 0's
    _, leader = managers[0].save(1, {"rank": 0})
    assert waiting.wait(bounded.TIMEOUT_S), "rank 0 never waited for rank 1's report"
    store.set("the job's own use", "goes through")
    assert not leader.done(), "the job's store waited for rank 0 to give up on rank 1"
    _, follower = managers[1].save(1, {"rank": 1})
    wait(leader)
    wait(follower)
    assert managers[1].all_steps() == [1]


def plant_crash_leftovers(root):
    (root / "step_7").mkdir()  # in mid-save: every file but no commit file
    torch_ext.save({"step": 7}, root / "step_7" / "checkpoint_0.pt")
    (root / "step_8").mkdir()  # half deleted: the commit file goes first
    (root / "step_8" / ".checkpoint_0.pt.4242.0.tmp").write_bytes(b"partial")
    (root / "step_1" / ".checkpoint_0.pt.4242.1.tmp").write_bytes(b"a stale temporary")
    (root / ".stray.4242.2.tmp").write_bytes(b"stale")


def test_listing_skips_crash_leftovers_and_start_up_removes_them(tmp_path):
    manager = torch_ext.CheckpointManager(tmp_path)
    wait(manager.save(1, {"step": 1})[1])
    plant_crash_leftovers(tmp_path)
    (tmp_path / "notes.txt").write_text("not the manager's")
    assert manager.all_steps() == [1]
    with pytest.raises(RuntimeError, match="step 7 is not committed"):
        manager.load(7)
    manager.close()

    manager = torch_ext.CheckpointManager(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "step_1"]
    assert sorted(os.listdir(tmp_path / "step_1")) == ["checkpoint_0.pt", "commit_success.txt"]
    assert manager.load() == {"step": 1}
