"""The detector contract shared by every detector.

* ``__init__`` only validates and stores parameters (a pydantic model per detector).
* ``fit(X, value_range=None) -> self`` learns state from history; fitted attributes end in ``_``.
* ``score(x)`` scores a series *causally*: score i depends only on fitted state and x[:i+1].
  Scores are in [0, 1], higher = more anomalous.
* ``update(t, value) -> score`` streams one point; by construction it returns what
  ``score`` would return for that point of the stream fed since ``fit``.

NaN policy (everywhere): a NaN is imputed by the last finite value (the fitted history's
last value before any) and scores 0, so a gap never crashes and never yields NaN.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """Base of every detector's parameter model: typed, bounded, documented, frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NotFittedError(RuntimeError):
    pass


def as_series(x: Any) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D series, got shape {arr.shape}")
    return arr


def ffill(x: np.ndarray, first: float) -> np.ndarray:
    """Forward-fill NaN/inf (``first`` before any finite value)."""
    ok = np.isfinite(x)
    if ok.all():
        return x
    idx = np.where(ok, np.arange(len(x)), -1)
    np.maximum.accumulate(idx, out=idx)
    out = np.where(idx >= 0, x[np.maximum(idx, 0)], first)
    return out


class Detector:
    """Base class. Subclasses set ``name``, ``Params`` and implement ``_fit``/``_score``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    streaming: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        self.params = self.Params(**params)

    def get_params(self) -> dict[str, Any]:
        return self.params.model_dump()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- contract -----------------------------------------------------------------
    def fit(self, X: Any, value_range: tuple[float, float] | None = None) -> "Detector":
        """Learn from history X. ``value_range`` is the (min, max) NAB reveals in advance;
        without it the finite range of X is used."""
        X = as_series(X)
        finite = X[np.isfinite(X)]
        if value_range is None:
            value_range = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        lo, hi = float(value_range[0]), float(value_range[1])
        self.value_range_ = (lo, hi)
        self.n_fit_ = int(len(X))
        self.fill_value_ = float(finite[-1]) if finite.size else lo
        Xf = ffill(X, float(finite[0]) if finite.size else lo)
        self._fit(Xf)
        # Bounded-memory detectors score a new series as the continuation of X.
        keep = max(int(self.lookback()) - 1, 0)
        self.context_ = Xf[len(Xf) - keep :] if keep else Xf[:0]
        self.reset_stream()
        return self

    def score(self, x: Any) -> np.ndarray:
        """Causal scores for series x (same length), in [0, 1], x continuing the fitted history."""
        self._check_fitted()
        x = as_series(x)
        bad = ~np.isfinite(x)
        ctx = self.context_
        full = np.concatenate([ctx, ffill(x, float(ctx[-1]) if len(ctx) else self.fill_value_)])
        s = np.asarray(self._score(full), dtype=float)[len(ctx) :]
        s = np.clip(np.nan_to_num(s, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        s[bad] = 0.0
        return s

    def update(self, t: Any, value: float) -> float:
        """Stream one point. Default: rescore a bounded buffer (exact when the detector's
        look-back is at most ``lookback`` points)."""
        self._check_fitted()
        v = float(value)
        ok = np.isfinite(v)
        if ok:
            self._last_ = v
        self._buffer_.append(self._last_)
        s = float(self._score(np.fromiter(self._buffer_, dtype=float))[-1])
        s = min(max(0.0 if np.isnan(s) else s, 0.0), 1.0)
        return s if ok else 0.0

    def reset_stream(self) -> None:
        """Forget streamed points (fitted state is kept)."""
        self._buffer_: deque[float] = deque(self.context_.tolist(), maxlen=max(int(self.lookback()), 1))
        self._last_ = self.fill_value_

    # -- for subclasses -------------------------------------------------------------
    def lookback(self) -> int:
        """How many past points (including the current one) a score depends on."""
        return 1

    def _fit(self, X: np.ndarray) -> None:  # default: nothing beyond range/fill
        return None

    def _score(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_fit_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(X) first")
