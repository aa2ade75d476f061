"""Loads the native library, which registers ``torch.ops.torch_ext``."""

import torch  # noqa: F401  (libtorch must be loaded first)

try:
    # _C depends on lib/libtorch_ext.so by soname: a process that already
    # loaded the C++ package's libtorch_ext.so reuses it, so the ops are
    # registered once.
    from torch_ext import _C  # noqa: F401
except ImportError as error:
    raise ImportError(
        "torch_ext's native library could not be loaded "
        f"({error}). Build it against the installed torch with "
        "`pip install --no-build-isolation .` from the torch_ext checkout."
    ) from error
