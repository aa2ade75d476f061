"""Times cases side by side: shuffled order, interleaved repeats, medians."""

from __future__ import annotations

import gc
import json
import random
import statistics
import sys
import time
from typing import Callable, Dict

# A case runs its operation `n` times in its own loop, so that no call
# overhead of the harness is added to the operation.
Case = Callable[[int], None]

TARGET_SECONDS = 0.02


def calibrate(case: Case) -> int:
    """Operations per measurement, so that one takes about TARGET_SECONDS."""
    for _ in range(3):  # first calls compile (TorchScript) and warm caches
        case(1)
    n = 1
    while True:
        start = time.process_time_ns()
        case(n)
        elapsed = (time.process_time_ns() - start) / 1e9
        if elapsed >= TARGET_SECONDS / 4 or n >= 1 << 24:
            return max(1, int(n * TARGET_SECONDS / max(elapsed, 1e-9)))
        n *= 4


def measure(cases: Dict[str, Case], repeats: int, smoke: bool) -> Dict[str, float]:
    """CPU nanoseconds per operation of each case, the median of `repeats`.

    Process CPU time, not wall time: it leaves out time the scheduler gives
    to other processes, and it counts threads the case starts (fork). The
    garbage collector stays on, but a collection before each sample keeps one
    case's reference cycles from being collected on another's time.
    """
    sizes = {name: 3 if smoke else calibrate(case) for name, case in cases.items()}
    samples: Dict[str, list] = {name: [] for name in cases}
    names = list(cases)
    for _ in range(repeats):
        random.shuffle(names)
        for name in names:
            gc.collect()
            start = time.process_time_ns()
            cases[name](sizes[name])
            samples[name].append((time.process_time_ns() - start) / sizes[name])
    return {name: statistics.median(values) for name, values in samples.items()}


def main(cases: Dict[str, Case]) -> None:
    """Prints {case: ns per operation} as JSON; `--smoke` runs each case briefly."""
    smoke = "--smoke" in sys.argv[1:]
    json.dump(measure(cases, repeats=1 if smoke else 5, smoke=smoke), sys.stdout)
    print()
