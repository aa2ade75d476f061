"""A job of several processes on this machine, started as torchrun starts one (the ranks rendezvous over
loopback), for the tests of multi-process saves and loads."""

import os
import subprocess
import sys


def torchrun(script, world_size, *args, timeout):
    """`torchrun --nproc-per-node world_size script args`, which must succeed within `timeout` seconds."""
    command = [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc-per-node", str(world_size),
        "--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:0",
        "--max-restarts", "0", "--monitor-interval", "0.1",
        str(script), *map(str, args),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert process.returncode == 0, process.stdout + process.stderr
    return process
