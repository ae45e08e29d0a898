"""Per-metric sliding buffers and window aggregates (pure functions, no numpy on the hot path).

A buffer holds (timestamp µs, value) pairs sorted by timestamp. In-order points are
appended; late points are inserted in place, so a late reading still corrects the window
it belongs to. A window at time ``t`` covers ``(t - width, t]``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right

__all__ = ["Buffer", "aggregate", "percentile"]


class Buffer:
    __slots__ = ("ts", "vals")

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.vals: list[float] = []

    def __len__(self) -> int:
        return len(self.ts)

    def add(self, t: int, v: float) -> None:
        if not self.ts or t >= self.ts[-1]:
            self.ts.append(t)
            self.vals.append(v)
        else:
            # bisect_right keeps arrival order among equal timestamps
            i = bisect_right(self.ts, t)
            self.ts.insert(i, t)
            self.vals.insert(i, v)

    def contains(self, t: int, v: float) -> bool:
        i = bisect_left(self.ts, t)
        while i < len(self.ts) and self.ts[i] == t:
            if self.vals[i] == v:
                return True
            i += 1
        return False

    def trim(self, keep_after: int) -> None:
        """Drop points with ts <= keep_after (they can never be inside a window again)."""
        i = bisect_right(self.ts, keep_after)
        if i:
            del self.ts[:i]
            del self.vals[:i]

    def slice(self, t: int, width: int) -> tuple[list[int], list[float]]:
        lo = bisect_right(self.ts, t - width)
        hi = bisect_right(self.ts, t)
        return self.ts[lo:hi], self.vals[lo:hi]


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (same as numpy.percentile's default method)."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def aggregate(agg: str, ts: list[int], vals: list[float]) -> float | None:
    """Aggregate a window's points; None when the aggregate is undefined for them."""
    if agg == "count":
        return float(len(vals))
    if not vals:
        return None
    if agg == "avg":
        return math.fsum(vals) / len(vals)
    if agg == "min":
        return min(vals)
    if agg == "max":
        return max(vals)
    if agg == "p95":
        return percentile(vals, 95.0)
    if agg == "rate":
        # counter slope per second between first and last point of the window
        span = ts[-1] - ts[0]
        if span <= 0:
            return None
        return (vals[-1] - vals[0]) / (span / 1_000_000)
    raise ValueError(f"unknown aggregate {agg!r}")
