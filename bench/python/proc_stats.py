"""What /proc says about this process's memory and the machine's CPUs (Linux)."""

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


def cpu_jiffies() -> tuple:
    """(busy, total) clock ticks of all the machine's CPUs since boot."""
    with open("/proc/stat") as stat:
        fields = [int(field) for field in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def busy_fraction(before: tuple, after: tuple) -> float:
    """The part of the CPUs' time between two cpu_jiffies() that was busy."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0
