"""NAB benchmark harness: load the corpus, run a detector over it, write results, score them.

Pure functions (no CLI, no printing) so the Dagster assets and the Streamlit lab can reuse
them. The only look-ahead a detector gets is what NAB allows: the probationary rows for
``fit`` and the file's min/max value.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detectors import registry
from detectors.scoring import PROFILES, CorpusScorer, Profile, probationary_length, profiles_from_json

NAB_HINT = "git clone https://github.com/numenta/NAB and set PULSE_NAB_DIR to it"


class NabNotFoundError(FileNotFoundError):
    """The NAB corpus is not where the settings point."""


@dataclass
class NabFile:
    key: str  # "<category>/<file>.csv", the key used by combined_windows.json
    timestamps: list[str]
    values: np.ndarray
    windows: list[tuple[int, int]]  # inclusive row indices

    @property
    def category(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split("/", 1)[1]

    @property
    def probation(self) -> int:
        return probationary_length(len(self.values))

    def labels(self) -> np.ndarray:
        lab = np.zeros(len(self.values), dtype=np.int8)
        for s, e in self.windows:
            lab[s : e + 1] = 1
        return lab


@dataclass
class Corpus:
    root: Path
    files: list[NabFile]
    profiles: dict[str, Profile] = field(default_factory=lambda: dict(PROFILES))

    @property
    def n_points(self) -> int:
        return sum(len(f.values) for f in self.files)

    def scorers(self) -> dict[str, CorpusScorer]:
        spec = [(len(f.values), f.windows) for f in self.files]
        return {name: CorpusScorer(spec, prof) for name, prof in self.profiles.items()}


def resolve_nab_dir(path: str | Path | None = None) -> Path:
    """The NAB directory from an explicit path or ``PULSE_NAB_DIR``; raises with a how-to."""
    if path is None:
        from pulse.settings import get_settings

        path = get_settings().nab_dir
    if path is None:
        raise NabNotFoundError(f"NAB corpus not found: {NAB_HINT}")
    root = Path(path)
    if not (root / "data").is_dir() or not (root / "labels" / "combined_windows.json").is_file():
        raise NabNotFoundError(f"NAB corpus not found at {root} (needs data/ and labels/combined_windows.json): {NAB_HINT}")
    return root


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if header[:2] != ["timestamp", "value"]:
            raise ValueError(f"{path}: expected header timestamp,value")
        ts, vals = [], []
        for row in reader:
            ts.append(row[0])
            vals.append(row[1])
    return ts, np.asarray(vals, dtype=float)


def _window_rows(timestamps: list[str], windows: Iterable[list[str]]) -> list[tuple[int, int]]:
    first: dict[str, int] = {}
    for i, t in enumerate(timestamps):
        first.setdefault(t, i)  # first occurrence wins (a few files repeat timestamps)
    out = []
    for start, end in windows:
        # Label timestamps carry ".000000"; the data does not.
        out.append((first[start.split(".")[0]], first[end.split(".")[0]]))
    return sorted(out)


def load_corpus(root: str | Path | None = None, only: Iterable[str] | None = None) -> Corpus:
    """Load every NAB file (in file order, rows never sorted) with its windows as row indices.

    ``only`` restricts to file keys or bare file names (for quick tests).
    """
    root = resolve_nab_dir(root)
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    wanted = set(only) if only is not None else None
    files = []
    for path in sorted((root / "data").glob("*/*.csv")):
        key = f"{path.parent.name}/{path.name}"
        if wanted is not None and key not in wanted and path.name not in wanted:
            continue
        ts, vals = _read_csv(path)
        files.append(NabFile(key, ts, vals, _window_rows(ts, windows.get(key, []))))
    profiles = dict(PROFILES)
    prof_path = root / "config" / "profiles.json"
    if prof_path.is_file():
        profiles = profiles_from_json(json.loads(prof_path.read_text()))
    return Corpus(root, files, profiles)


def detect_file(detector_name: str, params: Mapping | None, f: NabFile) -> np.ndarray:
    """Run a fresh detector over one file the way NAB streams it.

    ``fit`` sees the probationary rows and the file's min/max (NAB's only look-ahead);
    the remaining rows are scored causally as their continuation. Probationary rows are
    never scored by NAB and get 0.
    """
    det = registry.create(detector_name, **(params or {}))
    vals = f.values
    finite = vals[np.isfinite(vals)]
    value_range = (float(finite.min()), float(finite.max())) if finite.size else None
    p = max(f.probation, 1)
    det.fit(vals[:p], value_range=value_range)
    scores = np.zeros(len(vals))
    scores[p:] = det.score(vals[p:])
    return np.clip(np.nan_to_num(scores, nan=0.0), 0.0, 1.0)


@dataclass
class NabRun:
    detector: str
    params: dict
    scores: list[np.ndarray]
    runtime_s: float
    n_points: int
    results: dict[str, dict] = field(default_factory=dict)

    @property
    def points_per_s(self) -> float:
        return self.n_points / self.runtime_s if self.runtime_s > 0 else float("inf")

    def summary(self) -> dict:
        out = {"detector": self.detector, "params": self.params}
        out.update({name: round(r["score"], 4) for name, r in self.results.items()})
        out["thresholds"] = {name: r["threshold"] for name, r in self.results.items()}
        out["runtime_s"] = round(self.runtime_s, 3)
        out["points_per_s"] = round(self.points_per_s, 1)
        out["n_points"] = self.n_points
        return out


def run_corpus(
    detector_name: str,
    corpus: Corpus,
    params: Mapping | None = None,
    progress: Callable[[NabFile], None] | None = None,
) -> NabRun:
    """Detect over every file (timed: detection only, not I/O) and score all profiles."""
    params = registry.validate_params(detector_name, params or {})
    scores, elapsed = [], 0.0
    for f in corpus.files:
        t0 = time.perf_counter()
        scores.append(detect_file(detector_name, params, f))
        elapsed += time.perf_counter() - t0
        if progress is not None:
            progress(f)
    run = NabRun(detector_name, params, scores, elapsed, corpus.n_points)
    run.results = score_run(corpus, scores)
    return run


def score_run(corpus: Corpus, scores: list[np.ndarray]) -> dict[str, dict]:
    out = {}
    for name, scorer in corpus.scorers().items():
        if scorer.n_windows == 0:
            out[name] = _score_without_windows(scorer, scores)
            continue
        res = scorer.sweep(scores)
        out[name] = {
            "score": res.normalized,
            "raw": res.raw_score,
            "threshold": res.threshold,
            "tp": res.tp,
            "fp": res.fp,
            "fn": res.fn,
        }
    return out


def _score_without_windows(scorer: CorpusScorer, scores: list[np.ndarray]) -> dict:
    """Files without anomaly windows: NAB's normalisation divides by perfect - null = 0.

    With no windows every detection is a false positive (weight <= 0), so the sweep's best
    threshold detects nothing (T = 1.1, raw score 0): the null detector is the perfect one
    and the optimised detector equals both — reported as 100. ``fp_at_0.5`` says how many
    rows the detector would flag at a mid threshold, which is what such files measure."""
    scorer.curve(scores)  # validates lengths and ranges like the sweep does
    flat = np.concatenate([np.asarray(s, dtype=float)[f.probation:] for f, s in zip(scorer.files, scores)]) \
        if scores else np.empty(0)
    return {"score": 100.0, "raw": 0.0, "threshold": 1.1, "tp": 0, "fp": 0, "fn": 0,
            "fp_at_0.5": int(np.count_nonzero(flat >= 0.5)), "note": "no anomaly windows"}


def write_results(run: NabRun, corpus: Corpus, out_dir: str | Path, name: str | None = None) -> Path:
    """NAB-format results: ``DIR/NAME/<category>/NAME_<file>.csv`` plus ``DIR/NAME/summary.json``;
    NAME is the name the user gave (``default`` stays ``default``), else the detector's."""
    name = name or run.detector
    base = Path(out_dir) / name
    for f, s in zip(corpus.files, run.scores):
        d = base / f.category
        d.mkdir(parents=True, exist_ok=True)
        labels = f.labels()
        with (d / f"{name}_{f.name}").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value", "anomaly_score", "label"])
            for t, raw, score, lab in zip(f.timestamps, f.values.tolist(), s.tolist(), labels.tolist()):
                w.writerow([t, repr(raw), repr(score), lab])
    (base / "summary.json").write_text(json.dumps(run.summary(), indent=2))
    return base


def read_results(corpus: Corpus, results_dir: str | Path, detector: str) -> list[np.ndarray]:
    """Read NAB-format result CSVs back (any detector that writes NAB's layout)."""
    base = Path(results_dir) / detector
    out = []
    for f in corpus.files:
        path = base / f.category / f"{detector}_{f.name}"
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            out.append(np.asarray([float(r["anomaly_score"]) for r in reader], dtype=float))
    return out


def published_scoreboard(root: str | Path) -> dict[str, dict[str, float]]:
    return json.loads((Path(root) / "results" / "final_results.json").read_text())
