"""torch_ext.CheckpointManager under torchrun: ranks of a gloo job that
agree through the job's own c10d store, including a rank that fails."""

import json
import os
import textwrap

import pytest

import jobs

TIMEOUT_S = 300

RANK = textwrap.dedent("""
    import json, os, sys, torch, torch.distributed as dist, torch_ext
    from torch.distributed.distributed_c10d import _get_default_store

    root, out, failing = sys.argv[1], sys.argv[2], sys.argv[3]
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    manager = torch_ext.CheckpointManager(
        root, max_to_keep=2, rank=rank, world_size=world_size,
        store=_get_default_store(), barrier_timeout_secs=120)
    last = world_size - 1

    def state(step):
        return {"rank": rank, "step": step, "weight": torch.full((1000,), float(step * 100 + rank))}

    outcomes = {}
    for step in (1, 2, 3, 4):
        sd = state(step)
        if step == 2 and rank == last and failing == "value":
            sd["bad"] = object()
        if step == 2 and rank == last and failing == "folder":
            # A folder where this rank's file goes: only this rank cannot write.
            os.makedirs(os.path.join(manager.step_path(2), f"checkpoint_{rank}.pt"))
        try:
            stage_future, commit_future = manager.save(step, sd)
        except TypeError as error:
            outcomes[step] = "raised: " + str(error)
            continue
        try:
            commit_future.wait()
            outcomes[step] = "committed"
        except RuntimeError as error:
            outcomes[step] = str(error)
    manager.wait_until_finished()
    dist.barrier()
    loaded = manager.load()
    result = {
        "outcomes": outcomes,
        "all_steps": manager.all_steps(),
        "loaded": [loaded["rank"], loaded["step"], torch.equal(loaded["weight"], state(loaded["step"])["weight"])],
    }
    manager.close()
    with open(os.path.join(out, f"rank_{rank}.json"), "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()
""")


def torchrun(tmp_path, world_size, failing):
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    root, out = tmp_path / "ckpt", tmp_path / "out"
    out.mkdir()
    jobs.torchrun(script, world_size, root, out, failing, timeout=TIMEOUT_S)
    return root, [json.loads((out / f"rank_{rank}.json").read_text()) for rank in range(world_size)]


@pytest.mark.parametrize("world_size", [2, 4])
def test_every_rank_sees_each_step_committed_through_the_jobs_store(world_size, tmp_path):
    root, results = torchrun(tmp_path, world_size, failing="none")
    for rank, result in enumerate(results):
        assert result["outcomes"] == {str(step): "committed" for step in (1, 2, 3, 4)}
        assert result["all_steps"] == [3, 4]
        assert result["loaded"] == [rank, 4, True]
    assert sorted(os.listdir(root / "step_4")) == sorted(
        [f"checkpoint_{rank}.pt" for rank in range(world_size)] + ["commit_success.txt"]
    )


@pytest.mark.parametrize(("world_size", "failing"), [(2, "value"), (4, "folder")])
def test_one_rank_failing_its_write_commits_nothing_and_the_next_save_works(world_size, failing, tmp_path):
    root, results = torchrun(tmp_path, world_size, failing=failing)
    last = world_size - 1
    step_2 = os.path.join(str(root), "step_2")
    for rank, result in enumerate(results):
        outcome = result["outcomes"]["2"]
        if rank == last and failing == "value":
            # The rank whose state dict cannot be converted raises at once.
            assert outcome.startswith("raised: ") and "'bad'" in outcome, outcome
        else:
            assert f"step 2 was not committed in '{step_2}'" in outcome, outcome
            what = "produce its state dict" if failing == "value" else "write its file"
            assert f"rank {last} failed to {what}" in outcome, outcome
        for step in ("1", "3", "4"):
            assert result["outcomes"][step] == "committed", result
        assert result["all_steps"] == [3, 4]
        assert result["loaded"] == [rank, 4, True]
