"""Exact NAB scorer (NAB v1.1, see ``datasets/nab/SCORING.md``).

Pure numpy, no I/O: per-row weights (§3.5), raw score at a threshold (§3.6), the
"sweep" threshold optimiser NAB uses today and the legacy "twiddle" search (§3.8),
and normalisation to 0..100 (§3.9). Rows are addressed by index in file order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

PROBATIONARY_PERCENT = 0.15
PROBATIONARY_CAP_ROWS = 5000


@dataclass(frozen=True)
class Profile:
    """NAB cost matrix (``config/profiles.json``); ``tnWeight`` is unused by NAB."""

    name: str
    tp: float
    fn: float
    fp: float


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", tp=1.0, fn=1.0, fp=0.11),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", tp=1.0, fn=1.0, fp=0.22),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", tp=1.0, fn=2.0, fp=0.11),
}


def profiles_from_json(data: Mapping) -> dict[str, Profile]:
    """Build profiles from the parsed ``config/profiles.json``."""
    out = {}
    for name, body in data.items():
        cm = body["CostMatrix"]
        out[name] = Profile(name, tp=float(cm["tpWeight"]), fn=float(cm["fnWeight"]), fp=float(cm["fpWeight"]))
    return out


def probationary_length(n: int) -> int:
    """P(n) = min(floor(0.15 n), 0.15 * 5000) (§3.2)."""
    return int(min(math.floor(PROBATIONARY_PERCENT * n), PROBATIONARY_PERCENT * PROBATIONARY_CAP_ROWS))


def scaled_sigmoid(y: float | np.ndarray) -> np.ndarray:
    """S(y) = -1 if y > 3 else 2*sigmoid(-5y) - 1 (§3.4)."""
    y = np.asarray(y, dtype=float)
    with np.errstate(over="ignore"):
        val = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y > 3.0, -1.0, val)


MAX_TP = float(scaled_sigmoid(-1.0))


def row_weights(n: int, windows: Sequence[tuple[int, int]], profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """Per-row weight v_i and window id (-1 outside windows) for a file of n rows (§3.5).

    ``windows`` are inclusive (start, end) row indices, sorted and non-overlapping.
    """
    idx = np.arange(n, dtype=float)
    v = np.full(n, -profile.fp, dtype=float)
    wid = np.full(n, -1, dtype=np.int64)
    for k, (s, e) in enumerate(windows):
        width = e - s + 1
        inside = slice(s, e + 1)
        v[inside] = profile.tp * scaled_sigmoid(-(e - idx[inside] + 1) / width) / MAX_TP
        wid[inside] = k
        # After this window, up to the next one, only this window shapes the FP penalty.
        nxt = windows[k + 1][0] if k + 1 < len(windows) else n
        after = slice(e + 1, nxt)
        if width > 1:
            v[after] = profile.fp * scaled_sigmoid((idx[after] - e) / (width - 1))
        else:  # NAB divides by zero here; a 1-row window cannot occur in the corpus
            v[after] = -profile.fp
    return v, wid


@dataclass
class FileScoring:
    """Precomputed scorable rows of one file for one profile."""

    weights: np.ndarray  # v_i for scorable rows (i >= P)
    window_ids: np.ndarray  # global window id or -1, scorable rows only
    probation: int
    n_windows: int


def prepare_file(n: int, windows: Sequence[tuple[int, int]], profile: Profile, window_offset: int = 0) -> FileScoring:
    p = probationary_length(n)
    v, wid = row_weights(n, windows, profile)
    wid = np.where(wid >= 0, wid + window_offset, -1)
    return FileScoring(weights=v[p:], window_ids=wid[p:], probation=p, n_windows=len(windows))


@dataclass
class SweepResult:
    threshold: float
    raw_score: float
    normalized: float
    tp: int = 0
    fp: int = 0
    fn: int = 0
    curve_thresholds: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    curve_scores: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)


class CorpusScorer:
    """Scores detector outputs for one profile over a whole corpus (one threshold for all files).

    Build once per corpus + profile (weights depend only on positions), then call
    :meth:`score` for as many detector outputs as needed — that is the fast tuning loop.
    """

    def __init__(self, files: Sequence[tuple[int, Sequence[tuple[int, int]]]], profile: Profile):
        self.profile = profile
        parts, offset = [], 0
        for n, windows in files:
            parts.append(prepare_file(n, windows, profile, offset))
            offset += len(windows)
        self.files = parts
        self.n_windows = offset
        self.weights = np.concatenate([f.weights for f in parts]) if parts else np.empty(0)
        self.window_ids = np.concatenate([f.window_ids for f in parts]) if parts else np.empty(0, np.int64)

    def _scorable(self, scores: Sequence[np.ndarray]) -> np.ndarray:
        if len(scores) != len(self.files):
            raise ValueError(f"expected {len(self.files)} score arrays, got {len(scores)}")
        out = []
        for f, s in zip(self.files, scores):
            s = np.asarray(s, dtype=float)
            if len(s) != f.probation + len(f.weights):
                raise ValueError("score array length does not match its file")
            out.append(s[f.probation :])
        flat = np.concatenate(out) if out else np.empty(0)
        if np.isnan(flat).any() or (flat < 0).any() or (flat > 1).any():
            raise ValueError("anomaly scores must be finite and within [0, 1]")
        return flat

    def null_score(self) -> float:
        return -self.profile.fn * self.n_windows

    def perfect_score(self) -> float:
        return self.profile.tp * self.n_windows

    def normalize(self, raw: float) -> float:
        null, perfect = self.null_score(), self.perfect_score()
        return 100.0 * (raw - null) / (perfect - null)

    def curve(self, scores: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """R(T) at every distinct score value T (descending), vectorised form of the §3.8 sweep."""
        s = self._scorable(scores)
        order = np.argsort(-s, kind="stable")
        s_sorted = s[order]
        v = self.weights[order]
        wid = self.window_ids[order]
        gain = np.where(wid < 0, v, 0.0)
        in_win = np.flatnonzero(wid >= 0)
        if in_win.size:
            # Per window, the contribution is the running max of v in sweep order; the gain
            # of a row is how much it raises that max (start: -A_FN).
            w_rows = in_win[np.argsort(wid[in_win], kind="stable")]  # grouped by window, sweep order kept
            w_ids = wid[w_rows]
            span = 4.0 * max(self.profile.tp, 1.0)
            shifted = v[w_rows] + w_ids * span  # later groups always exceed earlier: accumulate restarts
            cummax = np.maximum.accumulate(shifted) - w_ids * span
            prev = np.empty_like(cummax)
            prev[1:] = cummax[:-1]
            first = np.ones(len(w_rows), dtype=bool)
            first[1:] = w_ids[1:] != w_ids[:-1]
            prev[first] = -self.profile.fn
            gain[w_rows] = cummax - prev
        total = np.cumsum(gain) + self.null_score()
        # Record after the last row of each run of equal scores.
        last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
        return s_sorted[last], total[last]

    def raw_at(self, scores: Sequence[np.ndarray], threshold: float) -> float:
        """R(T): detections are rows with score >= T."""
        thr, val = self.curve(scores)
        return _raw_at(thr, val, threshold, self.null_score())

    def sweep(self, scores: Sequence[np.ndarray]) -> SweepResult:
        """NAB's current optimiser: best R(T) over every distinct score; ties → higher T."""
        thr, val = self.curve(scores)
        best_t, best = 1.1, self.null_score()  # T = 1.1: no detections
        if val.size:
            k = int(np.argmax(val))
            if val[k] > best:
                best_t, best = float(thr[k]), float(val[k])
        res = SweepResult(threshold=best_t, raw_score=best, normalized=self.normalize(best))
        res.curve_thresholds, res.curve_scores = thr, val
        res.tp, res.fp, res.fn = self.counts(scores, best_t)
        return res

    def twiddle(self, scores: Sequence[np.ndarray], x0: float = 0.5, step: float = 0.1, tol: float = 1e-7) -> SweepResult:
        """Legacy NAB (<= 2018) local search; R = -inf outside [0, 1] (§3.8)."""
        thr, val = self.curve(scores)
        null = self.null_score()

        def objective(t: float) -> float:
            return -math.inf if t < 0 or t > 1 else _raw_at(thr, val, t, null)

        x, best = x0, objective(x0)
        while step > tol:
            up = objective(x + step)
            if up > best:
                x, best = x + step, up
                step *= 2
                continue
            down = objective(x - step)
            if down > best:
                x, best = x - step, down
                step *= 2
                continue
            step /= 2
        res = SweepResult(threshold=x, raw_score=best, normalized=self.normalize(best))
        res.tp, res.fp, res.fn = self.counts(scores, x)
        return res

    def counts(self, scores: Sequence[np.ndarray], threshold: float) -> tuple[int, int, int]:
        """(windows hit, detections outside windows, windows missed) at threshold T."""
        s = self._scorable(scores)
        det = s >= threshold
        hit = np.unique(self.window_ids[det & (self.window_ids >= 0)]).size
        fp = int(np.count_nonzero(det & (self.window_ids < 0)))
        return hit, fp, self.n_windows - hit


def _raw_at(thr_desc: np.ndarray, val: np.ndarray, t: float, null: float) -> float:
    # thr_desc is strictly descending; detections are all recorded thresholds >= t.
    k = int(np.searchsorted(-thr_desc, -t, side="right"))
    return null if k == 0 else float(val[k - 1])
