"""Simple statistical detectors: robust z-score, EWMA/seasonal residual, level shift."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from detectors._ops import rolling, shift, squash
from detectors.base import Detector, Params
from detectors.registry import register


def _scale_floor(det: Detector, rel: float) -> float:
    # Flat stretches give MAD = 0; a floor relative to the value range keeps tiny wiggles quiet.
    lo, hi = det.value_range_
    return max((hi - lo) * rel, 1e-12)


class RobustZParams(Params):
    window: int = Field(100, ge=3, le=100_000, description="rolling window (rows) for median and MAD")
    half: float = Field(6.0, gt=0, le=1000, description="robust z that maps to score 0.5")
    floor: float = Field(0.01, ge=0, le=1, description="scale floor as a fraction of the value range")


@register
class RobustZ(Detector):
    """|x - rolling median| / (1.4826 · rolling MAD) of the previous `window` rows."""

    name = "robust_z"
    summary = "Robust z-score against the rolling median/MAD of the previous rows"
    Params = RobustZParams

    def lookback(self) -> int:
        return 2 * self.params.window + 1

    def _score(self, x: np.ndarray) -> np.ndarray:
        w = self.params.window
        med = shift(rolling(x, w, "median"))
        dev = np.abs(x - np.nan_to_num(med, nan=x[0] if len(x) else 0.0))
        mad = shift(rolling(dev, w, "median"))
        scale = 1.4826 * np.nan_to_num(mad, nan=0.0) + _scale_floor(self, self.params.floor)
        z = np.abs(x - med) / scale
        return squash(np.nan_to_num(z, nan=0.0), self.params.half)


class EwmaParams(Params):
    alpha: float = Field(0.05, gt=0, le=1, description="EWMA smoothing factor for the level")
    season: int = Field(0, ge=0, le=100_000, description="season length in rows (0 = none); residual of x - x[t-season]")
    half: float = Field(5.0, gt=0, le=1000, description="residual z that maps to score 0.5")
    floor: float = Field(0.01, ge=0, le=1, description="scale floor as a fraction of the value range")


@register
class EwmaResidual(Detector):
    """Residual against an EWMA forecast (optionally of the seasonal difference)."""

    name = "ewma"
    summary = "EWMA forecast residual (optional seasonal differencing), z-scored by an EW deviation"
    Params = EwmaParams

    def lookback(self) -> int:
        # EW memory decays as (1-alpha)^k: 20/alpha rows leave < 1e-8 of the weight
        return int(min(20 / self.params.alpha, 50_000)) + self.params.season + 1

    def _score(self, x: np.ndarray) -> np.ndarray:
        import polars as pl

        p = self.params
        y = x.copy()
        if p.season:
            y = x - shift(x, p.season, fill=np.nan)
            y = np.nan_to_num(y, nan=0.0)
        s = pl.Series(y)
        level = shift(s.ewm_mean(alpha=p.alpha, adjust=False).to_numpy(), 1, fill=y[0] if len(y) else 0.0)
        resid = y - level
        dev = shift(pl.Series(np.abs(resid)).ewm_mean(alpha=p.alpha, adjust=False).to_numpy(), 1, fill=0.0)
        z = np.abs(resid) / (1.2533 * dev + _scale_floor(self, p.floor))  # mean|N| = 0.798 σ
        return squash(z, p.half)


class LevelShiftParams(Params):
    short: int = Field(5, ge=1, le=10_000, description="recent window (rows) whose mean is tested")
    long: int = Field(200, ge=5, le=100_000, description="reference window (rows) before the recent one")
    half: float = Field(2.0, gt=0, le=1000, description="shift in reference standard deviations that maps to score 0.5")
    floor: float = Field(0.01, ge=0, le=1, description="scale floor as a fraction of the value range")


@register
class LevelShift(Detector):
    """Changepoint score: mean of the last `short` rows vs mean/std of the `long` rows before."""

    name = "changepoint"
    summary = "Level-shift / changepoint score: recent mean vs preceding reference window"
    Params = LevelShiftParams

    def lookback(self) -> int:
        return self.params.short + self.params.long + 1

    def _score(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        recent = rolling(x, p.short, "mean")
        ref_mean = shift(rolling(x, p.long, "mean", 2), p.short)
        ref_std = shift(rolling(x, p.long, "std", 2), p.short)
        # Reference std, not the standard error: real series are autocorrelated, and
        # std/sqrt(short) would flag every ordinary swing as a shift.
        scale = np.nan_to_num(ref_std, nan=0.0) + _scale_floor(self, p.floor)
        z = np.abs(recent - ref_mean) / scale
        return squash(np.nan_to_num(z, nan=0.0), p.half)
