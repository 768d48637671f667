"""Small helpers the benches share: latency samples in nanoseconds, reported in milliseconds."""

from __future__ import annotations

import math
import statistics


def ms(ns: float) -> float:
    return ns / 1e6


def p50(samples: list[int]) -> float:
    """The median of `samples` (ns), in ms."""
    return ms(statistics.median(samples))


def p99(samples: list[int]) -> float:
    """The 99th percentile of `samples` (ns) by the nearest-rank method, in ms."""
    ordered = sorted(samples)
    return ms(ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)])


def r(value_ms: float) -> float:
    """Rounded for a report: 4 decimals (0.1 µs when in ms)."""
    return round(value_ms, 4)
