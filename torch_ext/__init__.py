"""Future helpers on ``c10::ivalue::Future`` for checkpointing.

``wrap_future`` turns any value into a "done" future that completes with None
when the value (if it is a future) completes, or with its exception.
``on_complete`` is the safe ``add_done_callback`` it is built on.
"""

from torch_ext import _native  # noqa: F401
from torch_ext.future_utils import on_complete, wrap_future

__all__ = ["on_complete", "wrap_future"]
from torch_ext.bridges import to_concurrent_future, to_torch_future  # noqa: E402
from torch_ext.dcp import patch_dcp  # noqa: E402

__all__ += ["patch_dcp", "to_concurrent_future", "to_torch_future"]
