"""Thresholds are separate from detectors: a detector scores, a threshold decides."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class StaticThreshold:
    """Alarm when score >= value (NAB's convention)."""

    value: float = 0.5

    def fit(self, scores: np.ndarray) -> "StaticThreshold":
        return self

    def decide(self, scores: np.ndarray | float) -> np.ndarray:
        return np.asarray(scores, dtype=float) >= self.value


@dataclass
class QuantileThreshold:
    """Alarm above the q-quantile of scores seen during fit (e.g. q=0.999 ≈ 1 alarm per 1000 rows)."""

    q: float = 0.999
    value_: float | None = field(default=None, init=False)

    def fit(self, scores: np.ndarray) -> "QuantileThreshold":
        s = np.asarray(scores, dtype=float)
        s = s[np.isfinite(s)]
        self.value_ = float(np.quantile(s, self.q)) if s.size else 1.0
        return self

    def decide(self, scores: np.ndarray | float) -> np.ndarray:
        if self.value_ is None:
            raise RuntimeError("QuantileThreshold is not fitted")
        return np.asarray(scores, dtype=float) >= self.value_


def nab_threshold(summary: dict, profile: str = "standard") -> StaticThreshold:
    """The corpus-optimal threshold the NAB sweep found (from ``NabRun.summary()``)."""
    return StaticThreshold(float(summary["thresholds"][profile]))
