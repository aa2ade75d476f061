"""What the commands print: sizes, times, JSON, and progress (a bar on a terminal, plain lines otherwise)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Optional, TextIO

_UNITS = ["B", "KiB", "MiB", "GiB", "TiB"]


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def print_json(value: Any, out: TextIO) -> None:
    json.dump(value, out, indent=2, default=str)
    out.write("\n")


class Progress:
    """Bytes done of a total: tqdm's bar when stderr is a terminal, else a line per tenth (and at the end)."""

    def __init__(self, what: str, total: int, stream: Optional[TextIO] = None) -> None:
        self._stream = stream or sys.stderr
        self._what = what
        self._total = total
        self._done = 0
        self._tenths = 0
        self._bar = None
        if self._stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=what, unit="B", unit_scale=True, unit_divisor=1024,
                             file=self._stream)

    def update(self, count: int) -> None:
        self._done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        tenths = 10 if self._total == 0 else min(10, self._done * 10 // self._total)
        if tenths > self._tenths:
            self._tenths = tenths
            self._stream.write(f"{self._what}: {human_bytes(self._done)} of {human_bytes(self._total)}"
                               f" ({tenths * 10}%)\n")
            self._stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
