"""Tree-ensemble detectors: scikit-learn IsolationForest on windowed features, river HalfSpaceTrees."""

from __future__ import annotations

import copy

import numpy as np
from pydantic import Field

from detectors.base import Detector, Params
from detectors.registry import register


def _normalise(det: Detector, x: np.ndarray) -> np.ndarray:
    lo, hi = det.value_range_
    return (x - lo) / max(hi - lo, 1e-12)


def _windows(x: np.ndarray, w: int) -> np.ndarray:
    """Row i → (x[i-w+1..i] level, its first differences); rows before the start repeat x[0]."""
    if len(x) == 0:
        return np.zeros((0, 2 * w - 1))
    padded = np.r_[np.full(w - 1, x[0]), x]
    win = np.lib.stride_tricks.sliding_window_view(padded, w)
    return np.hstack([win, np.diff(win, axis=1)])


class IForestParams(Params):
    window: int = Field(8, ge=1, le=256, description="rows per feature window")
    n_estimators: int = Field(50, ge=1, le=1000, description="number of trees")
    max_samples: int = Field(256, ge=8, le=100_000, description="rows sampled per tree")
    seed: int = Field(0, ge=0, description="random seed (same seed, same model)")


@register
class IForest(Detector):
    """IsolationForest trained on the fitted history's windows; score = 2^(-E[h]/c) in (0, 1]."""

    name = "iforest"
    summary = "scikit-learn IsolationForest over sliding windows of normalised values and differences"
    Params = IForestParams

    def lookback(self) -> int:
        return self.params.window

    def _fit(self, X: np.ndarray) -> None:
        from sklearn.ensemble import IsolationForest

        p = self.params
        feats = _windows(_normalise(self, X), p.window)
        self.model_ = IsolationForest(
            n_estimators=p.n_estimators,
            max_samples=min(p.max_samples, len(feats)),
            random_state=p.seed,
            n_jobs=1,
        ).fit(feats)
        # Trees cannot tell "just past the training range" from "far past it"; a range
        # guard (distance beyond each feature's fitted range, in IQR units) can.
        q25, q75 = np.percentile(feats, [25, 75], axis=0)
        self.feat_lo_, self.feat_hi_ = feats.min(axis=0), feats.max(axis=0)
        self.feat_scale_ = np.maximum(q75 - q25, 1e-3)

    def _score(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros(0)
        feats = _windows(_normalise(self, x), self.params.window)
        iso = -self.model_.score_samples(feats)
        excess = np.maximum(feats - self.feat_hi_, self.feat_lo_ - feats) / self.feat_scale_
        excess = np.maximum(excess, 0.0).max(axis=1)
        return np.maximum(iso, excess / (excess + 1.0))


class HSTParams(Params):
    n_trees: int = Field(10, ge=1, le=200, description="number of half-space trees")
    height: int = Field(8, ge=2, le=20, description="tree height")
    window_size: int = Field(250, ge=10, le=100_000, description="rows per reference/latest mass window")
    seed: int = Field(0, ge=0, description="random seed")


@register
class HalfSpaceTrees(Detector):
    """river HalfSpaceTrees on (normalised value, normalised first difference); learns online."""

    name = "hst"
    summary = "river HalfSpaceTrees (online), features: normalised value and first difference"
    Params = HSTParams

    _LIMITS = {"x": (-0.5, 1.5), "d": (-1.0, 1.0)}

    def _fit(self, X: np.ndarray) -> None:
        from river.anomaly import HalfSpaceTrees as RiverHST

        p = self.params
        self.model_ = RiverHST(
            n_trees=p.n_trees, height=p.height, window_size=p.window_size, limits=dict(self._LIMITS), seed=p.seed
        )
        z = _normalise(self, X)
        prev = z[0] if len(z) else 0.0
        for v in z:
            self.model_.learn_one(self._features(v, prev))
            prev = v
        self.prev_fit_ = float(prev)

    def _features(self, v: float, prev: float) -> dict[str, float]:
        return {"x": float(np.clip(v, -0.5, 1.5)), "d": float(np.clip(v - prev, -1.0, 1.0))}

    def _stream(self, model, v: float, prev: float) -> float:
        f = self._features(v, prev)
        s = model.score_one(f)
        model.learn_one(f)
        return s

    def _score(self, x: np.ndarray) -> np.ndarray:
        model = copy.deepcopy(self.model_)  # scoring must not change the fitted model
        z = _normalise(self, x)
        out = np.empty(len(z))
        prev = self.prev_fit_
        for i, v in enumerate(z):
            out[i] = self._stream(model, v, prev)
            prev = v
        return out

    def reset_stream(self) -> None:
        super().reset_stream()
        self._model_stream_ = copy.deepcopy(self.model_)
        self._prev_stream_ = self.prev_fit_

    def update(self, t, value: float) -> float:
        self._check_fitted()
        v = float(value)
        ok = np.isfinite(v)
        if ok:
            self._last_ = v
        z = float(_normalise(self, np.array([self._last_]))[0])
        s = self._stream(self._model_stream_, z, self._prev_stream_)
        self._prev_stream_ = z
        return float(np.clip(s, 0.0, 1.0)) if ok else 0.0
