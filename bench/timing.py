"""The timing the benchmarks share (run as scripts, they import it from their own folder)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(fn: Callable[[], object], rounds: int, warmup: int = 1) -> float:
    """Median wall time of `fn` over `rounds` calls, in ms, after `warmup` calls that are not timed."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3
