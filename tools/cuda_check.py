"""Checks of the checkpointer's device and stream behaviour, on a CUDA machine.

Not part of `make test` (CI has no GPU): run it where torch sees a GPU, with
torch_ext built against that torch. Exits non-zero on the first failure.

- Staging copies CUDA tensors to the CPU on a thread of its own, whose
  current stream is not the caller's: it must wait for the work queued on the
  caller's current stream before save(), here a long queue on a side stream
  ending in the values to save; for AsyncCheckpointer (whole and in waves)
  and CheckpointManager alike.
- Tied CUDA parameters are staged once and stay tied in the file.
- Writing CUDA tensors without staging is refused, naming the entry.
"""

import os
import sys
import tempfile

import torch

import torch_ext


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        sys.exit(1)


class Checkpointer:
    """torch_ext.AsyncCheckpointer, one folder per round."""

    def __init__(self, folder, **options):
        self.folder = folder
        self.impl = torch_ext.AsyncCheckpointer(**options)

    def save(self, round, state):
        return self.impl.save(f"{self.folder}/{round}", state)

    def load(self, round):
        return self.impl.load(f"{self.folder}/{round}")

    def close(self):
        self.impl.close()


class Manager:
    """torch_ext.CheckpointManager, one step per round."""

    def __init__(self, folder, **options):
        self.impl = torch_ext.CheckpointManager(folder, **options)

    def save(self, round, state):
        return self.impl.save(round, state)

    def load(self, round):
        return self.impl.load(round)

    def close(self):
        self.impl.close()


def staged_values_follow_the_callers_stream(saver, what):
    side = torch.cuda.Stream()
    a = torch.randn(4096, 4096, device="cuda")
    values = torch.empty(32 << 20, device="cuda")
    try:
        for round in range(8):
            with torch.cuda.stream(side):
                for _ in range(30):  # tens of ms of work ahead of the fill
                    a = torch.tanh(a @ a)
                values.fill_(round + 1)
                stage_future, write_future = saver.save(round, {"values": values})
            stage_future.wait()
            write_future.wait()
            loaded = saver.load(round)["values"]
            check(loaded.device.type == "cpu" and bool((loaded == round + 1).all()),
                  f"{what}, round {round}: staged values are the ones queued before save()")
        side.synchronize()
    finally:
        saver.close()


def tied_parameters_stay_tied(folder):
    embed = torch.nn.Embedding(1000, 256).cuda()
    head = torch.nn.Linear(256, 1000, bias=False).cuda()
    head.weight = embed.weight
    state = {"embed.weight": embed.weight.detach(), "head.weight": head.weight.detach()}
    with torch_ext.AsyncCheckpointer() as checkpointer:
        checkpointer.save(folder, state)[1].wait()
        loaded = checkpointer.load(folder)
    check(torch.equal(loaded["embed.weight"], embed.weight.detach().cpu()), "tied weights saved bitwise")
    check(loaded["embed.weight"].data_ptr() == loaded["head.weight"].data_ptr(), "the tie survives staging")
    size = os.path.getsize(f"{folder}/checkpoint_0.pt")
    check(size < 1.5 * 1000 * 256 * 4, f"the tied storage is written once ({size} bytes)")


def unstaged_cuda_tensors_are_refused(folder):
    try:
        torch_ext.save({"model": {"w": torch.ones(3, device="cuda")}}, f"{folder}/direct.pt")
    except TypeError as error:
        check("entry 'model.w' is a tensor on cuda:0" in str(error), f"refused: {error}")
        return
    check(False, "writing a CUDA tensor without staging is refused")


def main():
    check(torch.cuda.is_available(), f"torch {torch.__version__} sees {torch.cuda.device_count()} GPU(s)")
    with tempfile.TemporaryDirectory() as folder:
        # Both share the save pipeline; waves copy from the device piece by piece.
        staged_values_follow_the_callers_stream(Checkpointer(f"{folder}/whole"), "AsyncCheckpointer")
        staged_values_follow_the_callers_stream(
            Checkpointer(f"{folder}/waves", max_staging_bytes=8 << 20), "AsyncCheckpointer in waves")
        staged_values_follow_the_callers_stream(Manager(f"{folder}/manager"), "CheckpointManager")
        tied_parameters_stay_tied(f"{folder}/tied")
        unstaged_cuda_tensors_are_refused(folder)
    print("all CUDA checks passed")


if __name__ == "__main__":
    main()
