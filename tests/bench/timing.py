"""Timing shared by the read benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_ms(read: Callable[[], Any], requests: int) -> float:
    """The median wall time of `requests` calls of `read`, in ms, after one untimed call to warm up."""
    read()
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        read()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3
