"""Every way the checkpoint benchmark saves a state dict, behind one interface.

A saver's start() returns once the caller may go on (the time it blocks is
measured around it) with a Save whose poll() stamps, with time.perf_counter(),
when the caller may change its tensors again (staged) and when the file is on
disk, fsync'd (durable). Peers that do not fsync (upstream's CheckpointWriter
calls torch.save to the final path) are fsync'd by us once they report
written, so that every durable time means the same.
"""

from __future__ import annotations

import math
import os
import pathlib
import shutil
import subprocess
import threading
import time
import warnings
from typing import Callable, Dict, List, Optional

import torch

import torch_ext

# DCP says so on its writer thread at each save without a process group, which is the case measured.
warnings.filterwarnings("ignore", message="torch.distributed is disabled")


def fsync_path(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def torch_save_durably(state: dict, file: pathlib.Path) -> None:
    with open(file, "wb") as out:
        torch.save(state, out)
        out.flush()
        os.fsync(out.fileno())


class Save:
    """One save in flight. `staged_at` and `durable_at` are perf_counter() stamps."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = folder
        self.staged_at: Optional[float] = None
        self.durable_at: Optional[float] = None
        self._checks: List[Callable[[], None]] = []
        self._error: Optional[BaseException] = None

    def done_now(self) -> None:
        self.staged_at = self.durable_at = time.perf_counter()

    def poll(self) -> bool:
        """Stamps what completed since the last poll; True once durable."""
        for check in self._checks:
            check()
        if self._error is not None:
            raise self._error
        return self.durable_at is not None

    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())


class Saver:
    name = ""
    asynchronous = True
    # Whether the training loop runs during the save; without it the caller
    # only polls, so that the save has the machine as the plain write has.
    with_loop = True

    def open(self, folder: pathlib.Path) -> None:
        """Set-up that a training run does once (threads, processes), untimed."""
        if self.asynchronous:
            # A first small save: a checkpointer that starts a process or a
            # thread pool lazily does so here, not during the loop's idle time.
            save = self.start(folder, {"warm_up": torch.ones(4)})
            deadline = time.perf_counter() + 300
            while not save.poll():
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{self.name}: the warm-up save took over 300 s")
                time.sleep(0.001)
            remove(folder)

    def start(self, folder: pathlib.Path, state: dict) -> Save:
        raise NotImplementedError

    def close(self) -> None:
        pass


class TorchSaveSync(Saver):
    """torch.save + fsync on the calling thread."""

    name = "torch_save"
    asynchronous = False

    def start(self, folder, state):
        save = Save(folder)
        folder.mkdir(parents=True)
        torch_save_durably(state, folder / "checkpoint_0.pt")
        save.done_now()
        return save


class TorchSaveThread(Saver):
    """torch.save + fsync on a thread: the tensors must not change until it ends."""

    name = "torch_save_thread"

    def start(self, folder, state):
        save = Save(folder)
        folder.mkdir(parents=True)

        def run() -> None:
            try:
                torch_save_durably(state, folder / "checkpoint_0.pt")
            except BaseException as error:  # handed to the caller by poll()
                save._error = error
            save.done_now()

        threading.Thread(target=run, daemon=True).start()
        return save


def stamp_when_done(save: Save, future, attribute: str) -> None:
    """Polls a torch or concurrent future's done() from the caller's loop."""

    def check() -> None:
        if getattr(save, attribute) is None and future.done():
            setattr(save, attribute, time.perf_counter())
            if attribute == "durable_at" and save.staged_at is None:
                save.staged_at = save.durable_at
            exception = future.exception() if hasattr(future, "exception") else None
            if exception is None and isinstance(future, torch.futures.Future):
                future.wait()  # raises the error, if any
            elif exception is not None:
                save._error = exception

    save._checks.append(check)


class UpstreamProcess(Saver):
    """torch.distributed.checkpoint._experimental's make_async_checkpointer: a writer subprocess."""

    name = "upstream_process"

    def open(self, folder):
        from torch.distributed.checkpoint._experimental import (
            CheckpointerConfig,
            CheckpointStagerConfig,
            make_async_checkpointer,
        )

        # On CPU: no pinned memory; shared memory, so that the writer process
        # reads the staged copy without another one.
        staging = CheckpointStagerConfig(use_pinned_memory=False, use_non_blocking_copy=False)
        self.checkpointer = make_async_checkpointer(config=CheckpointerConfig(staging_config=staging))
        super().open(folder)

    def start(self, folder, state):
        save = Save(folder)
        staged, written = self.checkpointer.save(str(folder), state)
        stamp_when_done(save, staged, "staged_at")
        done = threading.Event()
        errors: List[BaseException] = []

        def fsync_then_stamp(future) -> None:
            # Upstream writes without fsync: ours follows, on the thread that
            # completed the write.
            try:
                future.result()
                fsync_path(folder / "checkpoint_0.pt")
                fsync_path(folder)
            except BaseException as error:
                errors.append(error)
            save.durable_at = time.perf_counter()
            done.set()

        written.add_done_callback(fsync_then_stamp)

        def check() -> None:
            if done.is_set() and errors:
                save._error = errors[0]

        save._checks.append(check)
        return save

    def close(self):
        self.checkpointer.close()


class DcpAsyncSave(Saver):
    """torch.distributed.checkpoint.async_save, thread-based, in one process without a process group."""

    name = "dcp_async_save"

    def start(self, folder, state):
        import torch.distributed.checkpoint as dcp

        save = Save(folder)
        result = dcp.async_save(state, checkpoint_id=str(folder), no_dist=True)
        if hasattr(result, "staging_completion"):
            stamp_when_done(save, result.staging_completion, "staged_at")
            result = result.upload_completion
        else:
            save.staged_at = time.perf_counter()  # it staged before returning
        stamp_when_done(save, result, "durable_at")  # FileSystemWriter fsyncs its files
        return save


class Ours(Saver):
    """torch_ext.AsyncCheckpointer from Python."""

    def __init__(self, name: str = "torch_ext", with_loop: bool = True, **options) -> None:
        self.name = name
        self.with_loop = with_loop
        self.options = options

    def open(self, folder):
        self.checkpointer = torch_ext.AsyncCheckpointer(**self.options)
        super().open(folder)

    def start(self, folder, state):
        save = Save(folder)
        staged, written = self.checkpointer.save(folder, state)
        stamp_when_done(save, staged, "staged_at")
        stamp_when_done(save, written, "durable_at")
        return save

    def close(self):
        self.checkpointer.close()


class OursSync(Saver):
    """torch_ext.save on the calling thread (durable)."""

    name = "torch_ext_save"
    asynchronous = False

    def start(self, folder, state):
        save = Save(folder)
        folder.mkdir(parents=True)
        torch_ext.save(state, folder / "checkpoint_0.pt")
        save.done_now()
        return save


class PlainWrite(Saver):
    """The disk's limit: every tensor's bytes written in turn to one file, then fsync."""

    name = "plain_write"
    asynchronous = False

    def start(self, folder, state):
        from bench_state import tensors

        save = Save(folder)
        folder.mkdir(parents=True)
        fd = os.open(folder / "plain.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for tensor in tensors(state):
                view = memoryview(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())
                while view:
                    view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        save.done_now()
        return save


class Dd(Saver):
    """The disk's limit by dd: the same number of bytes from /dev/zero, conv=fsync."""

    name = "dd"
    asynchronous = False

    def start(self, folder, state):
        from bench_state import tensor_bytes

        save = Save(folder)
        folder.mkdir(parents=True)
        mib = math.ceil(tensor_bytes(state) / 2**20)
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={folder / 'dd.bin'}", "bs=1M", f"count={mib}", "conv=fsync"],
            check=True, capture_output=True, timeout=600,
        )
        save.done_now()
        return save


def budget_fractions() -> Dict[str, float]:
    """The staging budgets of the curve, as fractions of the state."""
    return {"1/8": 1 / 8, "1/4": 1 / 4, "1/2": 1 / 2, "1": 1.0}


def savers(state_bytes: int) -> Dict[str, Saver]:
    every = [TorchSaveSync(), TorchSaveThread(), UpstreamProcess(), DcpAsyncSave(), Ours(),
             Ours("torch_ext_writer_nice_0", writer_nice=0),
             Ours("torch_ext_alone", with_loop=False, writer_nice=0), OursSync(), PlainWrite(), Dd()]
    for label, fraction in budget_fractions().items():
        every.append(Ours(f"torch_ext_budget_{label}", max_staging_bytes=int(state_bytes * fraction)))
    return {saver.name: saver for saver in every}


def remove(folder: pathlib.Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
