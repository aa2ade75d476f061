"""Future helpers on ``c10::ivalue::Future`` for checkpointing.

``wrap_future`` turns any value into a "done" future that completes with None
when the value (if it is a future) completes, or with its exception.
``on_complete`` is the safe ``add_done_callback`` it is built on.
``AsyncCheckpointer`` is their first user: asynchronous checkpoints in C++
that upstream DCP reads; ``CheckpointManager`` keeps a training run's steps
(commit, latest, retention, crash-safe resume). ``torch_ext.safetensors``
reads and writes Hugging Face's safetensors files and sharded folders.
"""

from torch_ext import _native  # noqa: F401
from torch_ext import safetensors
from torch_ext.bridges import to_concurrent_future, to_torch_future
from torch_ext.checkpoint_manager import CheckpointManager
from torch_ext.checkpointer import AsyncCheckpointer
from torch_ext.dcp import load_dcp
from torch_ext.dcp_patch import patch_dcp
from torch_ext.future_utils import on_complete, wrap_future
from torch_ext.serialization import load, save

__all__ = [
    "AsyncCheckpointer",
    "CheckpointManager",
    "load",
    "load_dcp",
    "on_complete",
    "patch_dcp",
    "safetensors",
    "save",
    "to_concurrent_future",
    "to_torch_future",
    "wrap_future",
]
