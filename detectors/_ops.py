"""Vectorised causal building blocks shared by the detectors (numpy + polars rolling ops)."""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.special import log_ndtr


def rolling(x: np.ndarray, window: int, fn: str, min_samples: int = 1) -> np.ndarray:
    """Trailing-window statistic ending at each row (includes the row itself)."""
    s = pl.Series(x, dtype=pl.Float64)
    return getattr(s, f"rolling_{fn}")(int(window), min_samples=int(min_samples)).to_numpy().astype(float)


def shift(a: np.ndarray, k: int = 1, fill: float = np.nan) -> np.ndarray:
    """a shifted k rows later: row i sees a[i-k] (so a statistic of the *past* only)."""
    out = np.empty_like(a, dtype=float)
    k = min(k, len(a))
    out[:k] = fill
    out[k:] = a[: len(a) - k]
    return out


def squash(z: np.ndarray, half: float) -> np.ndarray:
    """Map a non-negative strength to [0, 1): ``half`` maps to 0.5. Monotone, never saturates to 1."""
    z = np.maximum(np.nan_to_num(z, nan=0.0, posinf=1e300), 0.0)
    return z / (z + half)


def cumcount(keys: np.ndarray) -> np.ndarray:
    """How many earlier rows share each row's key (causal histogram count)."""
    n = len(keys)
    if n == 0:
        return np.zeros(0)
    order = np.argsort(keys, kind="stable")
    ks = keys[order]
    starts = np.r_[0, np.flatnonzero(ks[1:] != ks[:-1]) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    out = np.empty(n)
    out[order] = np.arange(n) - group_start
    return out


def anomaly_likelihood(raw: np.ndarray, window: int, short: int, min_samples: int = 20) -> np.ndarray:
    """Numenta-style anomaly likelihood in log form, in [0, 1].

    The short moving average of the raw score is compared with the mean/std of the raw
    score over the previous ``window`` rows; the Gaussian tail probability Q of that z is
    reported as ``-log10(Q)/10`` (Numenta's log-likelihood: 1.0 means Q <= 1e-10).
    """
    raw = np.asarray(raw, dtype=float)
    m = rolling(raw, short, "mean")
    mu = shift(rolling(raw, window, "mean", min_samples))
    sd = shift(rolling(raw, window, "std", min_samples))
    sd = np.maximum(np.nan_to_num(sd, nan=1.0), 1e-6)
    z = (m - np.nan_to_num(mu, nan=0.0)) / sd
    out = -log_ndtr(-z) / np.log(10.0) / 10.0
    out[: min(min_samples, len(out))] = 0.0
    return np.clip(out, 0.0, 1.0)


def suppress(s: np.ndarray, window: int) -> np.ndarray:
    """Keep a score only if it beats every score of the previous ``window`` rows; else 0.

    Why: NAB (and on-call humans) value the first alarm of an event; repeats inside the
    same event earn nothing, and repeats after it are false positives.
    """
    if window <= 0 or len(s) == 0:
        return s
    prev = shift(rolling(s, window, "max"), 1, fill=-np.inf)
    return np.where(s > np.nan_to_num(prev, nan=-np.inf), s, 0.0)
