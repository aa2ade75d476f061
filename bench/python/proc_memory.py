"""Resident memory of this process, from /proc (Linux)."""

from __future__ import annotations

import ctypes


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def rss() -> int:
    """Resident bytes now."""
    return _status("VmRSS")


def reset_peak() -> None:
    """Starts peak() afresh from the resident bytes now."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def peak() -> int:
    """The most resident bytes since the last reset_peak() (VmHWM)."""
    return _status("VmHWM")


def release_free_memory() -> None:
    """Returns the allocator's free memory to the system (glibc malloc_trim).

    Without it, memory an earlier case freed stays resident in malloc's heap
    (glibc raises its mmap threshold up to 32 MiB as large blocks are freed),
    and a later case that reuses it shows no growth of RSS.
    """
    ctypes.CDLL("libc.so.6").malloc_trim(0)
