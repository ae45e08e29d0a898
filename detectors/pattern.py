"""Temporal-pattern novelty building blocks for the ensemble (all causal, streamable).

* :class:`PatternNN` — *shape* novelty: the series is cut into blocks of ``block`` rows;
  every completed block closes a window of the last ``length`` block means (scaled to the
  known value range). The window's distance to its nearest *earlier* window (windows that
  overlap it are excluded, as in a left matrix profile) says how unlike anything seen so
  far the recent pattern is. That distance is turned into a score by its rank among the
  earlier nearest-neighbour distances, on the same scale as value novelty:
  ``-log((#earlier distances >= d + prior) / (n + 1)) / log(n + 2)``.
  Catches anomalies whose single values all look ordinary (a missing daily peak, a
  holiday-shaped day, a changed rhythm).
* :class:`KeyCounts` + :func:`transition_keys` — *transition* novelty: how rarely the pair
  (level now, level one block ago) of a block-smoothed, coarsely binned series has been
  seen so far.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

import numpy as np

from detectors._ops import cumcount, rolling


def rank_novelty(ge: float, n: int, prior: float) -> float:
    """``-log((ge + prior) / (n + 1)) / log(n + 2)`` clipped to [0, 1] (n = history size)."""
    s = -math.log((ge + prior) / (n + 1.0)) / math.log(n + 2.0)
    return min(max(s, 0.0), 1.0)


class KeyCounts:
    """Causal counts over integer keys; a key's score is how rarely it has been seen."""

    def __init__(self, prior: float):
        self.prior = prior
        self.counts: dict[int, int] = {}
        self.t = 0

    def scores(self, keys: np.ndarray, learn: bool = True) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.int64)
        prev = cumcount(keys)
        if self.counts:
            prev = prev + np.fromiter((self.counts.get(int(k), 0) for k in keys), dtype=float, count=len(keys))
        t = self.t + np.arange(len(keys), dtype=float)
        s = -np.log((prev + self.prior) / (t + 1.0)) / np.log(t + 2.0)
        if learn:
            uk, uc = np.unique(keys, return_counts=True)
            for k, c in zip(uk.tolist(), uc.tolist()):
                self.counts[k] = self.counts.get(k, 0) + c
            self.t += len(keys)
        return np.clip(s, 0.0, 1.0)

    def score_one(self, key: int) -> float:
        c = self.counts.get(key, 0)
        s = -math.log((c + self.prior) / (self.t + 1.0)) / math.log(self.t + 2.0)
        self.counts[key] = c + 1
        self.t += 1
        return min(max(s, 0.0), 1.0)

    def copy(self) -> "KeyCounts":
        k = KeyCounts(self.prior)
        k.counts, k.t = dict(self.counts), self.t
        return k


_PAD = 50  # levels beyond the known range keep their own keys (up to 50 bins out)


def level_keys(y: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """Bin index of y on ``bins`` bins over [lo, hi], shifted to be non-negative."""
    width = max(hi - lo, 1e-12) / bins
    k = np.floor((np.asarray(y, dtype=float) - lo) / width)
    return (np.clip(k, -_PAD, bins + _PAD) + _PAD).astype(np.int64)


def transition_keys(full: np.ndarray, lo: float, hi: float, bins: int, block: int, order: int, first_key: int) -> np.ndarray:
    """Key of (level now, level ``block`` rows ago, …) for every row of ``full``; the level
    is the ``block``-row moving average, binned. Lags before the start of ``full`` use
    ``first_key`` (the key of the series' very first row)."""
    y = full if block == 1 else rolling(full, block, "mean")
    q = level_keys(y, lo, hi, bins)
    base = bins + 2 * _PAD + 1
    key = q.copy()
    for j in range(1, order):
        lag = j * block
        lagged = np.full(len(q), first_key, dtype=np.int64)
        if lag < len(q):
            lagged[lag:] = q[: len(q) - lag]
        key = key * base + lagged
    return key


def transition_key_stream(buf: list[float], lo: float, hi: float, bins: int, block: int, order: int, first_key: int, n_seen: int) -> int:
    """:func:`transition_keys` for the last row of ``buf`` (the last rows of the stream).

    ``n_seen`` is how many rows the stream has had in total (so a lag that reaches before
    the series start uses ``first_key``, and a window cut by the start is partial).
    """
    base = bins + 2 * _PAD + 1
    n = len(buf)
    key = 0
    for j in range(order):
        end = n - j * block  # exclusive end of the averaged window in buf
        if n_seen - j * block <= 0:
            q = first_key
        else:
            start = max(end - block, 0)
            seg = buf[start:end]
            q = int(level_keys(np.array([sum(seg) / len(seg)]), lo, hi, bins)[0])
        key = key * base + q
    return key


class PatternNN:
    """Left nearest-neighbour novelty of windows of block means (see module doc)."""

    def __init__(self, lo: float, hi: float, block: int, length: int, prior: float, warmup: int):
        self.lo, self.r = lo, max(hi - lo, 1e-12)
        self.block, self.length, self.prior, self.warmup = block, length, prior, warmup
        self.feats = np.empty((16, length))
        self.k = 0  # windows seen
        self.levels: deque[float] = deque(maxlen=length)
        self.acc, self.cnt = 0.0, 0
        self.pool: list[float] = []  # sorted nearest-neighbour distances of earlier windows

    def copy(self) -> "PatternNN":
        p = PatternNN.__new__(PatternNN)
        p.__dict__.update(self.__dict__)
        p.feats = self.feats.copy()
        p.levels = deque(self.levels, maxlen=self.length)
        p.pool = list(self.pool)
        return p

    def _window(self) -> float:
        f = np.fromiter(self.levels, dtype=float, count=self.length)
        k = self.k
        allowed = k - self.length + 1  # earlier windows that do not overlap this one
        d = math.inf
        if allowed > 0:
            d = float(np.sqrt(((self.feats[:allowed] - f) ** 2).sum(axis=1)).min())
        if k >= len(self.feats):
            self.feats = np.concatenate([self.feats, np.empty_like(self.feats)])
        self.feats[k] = f
        self.k = k + 1
        if not math.isfinite(d) or k < self.warmup:
            return 0.0
        n = len(self.pool)
        s = rank_novelty(n - bisect.bisect_left(self.pool, d), n, self.prior) if n else 0.0
        bisect.insort(self.pool, d)
        return s

    def push(self, v: float) -> float:
        """Feed one row; returns the score (non-zero only when a block completes)."""
        self.acc += v
        self.cnt += 1
        if self.cnt < self.block:
            return 0.0
        self.levels.append((self.acc / self.block - self.lo) / self.r)
        self.acc, self.cnt = 0.0, 0
        return self._window() if len(self.levels) == self.length else 0.0

    def scores(self, x: np.ndarray) -> np.ndarray:
        push = self.push
        return np.fromiter((push(v) for v in np.asarray(x, dtype=float).tolist()), dtype=float, count=len(x))
