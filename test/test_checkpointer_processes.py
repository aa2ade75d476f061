"""AsyncCheckpointer across processes: a crash in mid-write, and ranks that
meet at a TCPStore barrier on loopback."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch.distributed.checkpoint._experimental.checkpoint_reader import CheckpointReader
from torch.distributed.checkpoint._experimental.types import RankInfo

TIMEOUT_S = 120

WRITE_FOREVER = textwrap.dedent("""
    import sys, torch, torch_ext
    checkpointer = torch_ext.AsyncCheckpointer()
    weight = torch.empty(16 << 20)  # 64 MiB
    step = 0
    while True:
        step += 1
        weight.fill_(step)
        checkpointer.save(sys.argv[1], {"step": step, "weight": weight})[1].wait()
""")


def temporaries(folder):
    return [name for name in os.listdir(folder) if name.endswith(".tmp")]


def kill_in_mid_write(folder):
    """Starts a writer and SIGKILLs it while a temporary file is being written
    after at least one complete checkpoint. Returns whether it was caught in
    mid-write (the temporary file outlived it)."""
    child = subprocess.Popen([sys.executable, "-c", WRITE_FOREVER, str(folder)])
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not ((folder / "checkpoint_0.pt").exists() and temporaries(folder)):
            assert time.monotonic() < deadline, "the writer never wrote twice"
            assert child.poll() is None, "the writer exited"
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=TIMEOUT_S)
    finally:
        child.kill()
    return bool(temporaries(folder))


def test_a_crash_in_mid_write_leaves_the_previous_checkpoint_whole(tmp_path):
    # A kill can land just after a rename: try again then, a few times.
    for attempt in range(5):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        if kill_in_mid_write(folder):
            break
    else:
        pytest.fail("never caught the writer in mid-write")
    loaded, _ = CheckpointReader(RankInfo(0, 1)).read(str(folder))
    assert loaded["step"] >= 1
    assert torch.equal(loaded["weight"], torch.full((16 << 20,), float(loaded["step"])))


RANK = textwrap.dedent("""
    import os, sys, time, torch, torch_ext
    rank, world_size, port, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    checkpointer = torch_ext.AsyncCheckpointer(
        rank, world_size, barrier_host="127.0.0.1", barrier_port=port, barrier_timeout_secs=60)
    others = [f"checkpoint_{r}.pt" for r in range(world_size - 1)]
    for step in range(2):
        folder = os.path.join(path, f"step_{step}")
        if rank == world_size - 1:
            # The last rank writes once the others' files are there (a file
            # appears once durable, and its rank goes on to the barrier): their
            # write futures may complete only once its file is there too.
            deadline = time.monotonic() + 60
            while not all(os.path.exists(os.path.join(folder, name)) for name in others):
                assert time.monotonic() < deadline, "the other ranks did not write their files"
                time.sleep(0.001)
        checkpointer.save(folder, {"rank": rank, "weight": torch.full((1000,), float(rank))})[1].wait()
        print(step, ",".join(sorted(os.listdir(folder))), flush=True)
    checkpointer.close()
""")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("world_size", [2, 4])
def test_write_future_completes_once_every_rank_has_written(world_size, tmp_path):
    port = free_port()
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", RANK, str(rank), str(world_size), str(port), str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(world_size)
    ]
    try:
        outputs = [process.communicate(timeout=TIMEOUT_S) for process in ranks]
    finally:
        for process in ranks:
            process.kill()
    every_file = ",".join(sorted(f"checkpoint_{rank}.pt" for rank in range(world_size)))
    for process, (out, err) in zip(ranks, outputs):
        assert process.returncode == 0, err
        # What each rank saw when its write_future completed.
        assert out.split("\n")[:2] == [f"0 {every_file}", f"1 {every_file}"], out + err
    for rank in range(world_size):
        loaded, _ = CheckpointReader(RankInfo(rank, world_size)).read(str(tmp_path / "step_1"))
        assert loaded["rank"] == rank
        assert torch.equal(loaded["weight"], torch.full((1000,), float(rank)))
