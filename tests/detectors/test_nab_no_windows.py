"""NAB scoring of files without anomaly windows (used to raise ZeroDivisionError)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.nab import Corpus, NabFile, run_corpus, score_run


def _file(key, n=400, windows=(), spike=None):
    rng = np.random.default_rng(len(key))
    vals = 10 + rng.normal(0, 1, n)
    if spike is not None:
        vals[spike] += 50
    return NabFile(key, [f"2026-01-01 00:{i // 60:02d}:{i % 60:02d}" for i in range(n)], vals, list(windows))


def test_corpus_without_windows_scores_instead_of_dividing_by_zero():
    corpus = Corpus(Path("."), [_file("a/quiet.csv"), _file("b/noisy.csv", spike=300)])
    run = run_corpus("robust_z", corpus)
    for name, r in run.results.items():
        assert r["score"] == 100.0 and r["threshold"] == 1.1 and (r["tp"], r["fp"], r["fn"]) == (0, 0, 0)
        assert r["note"] == "no anomaly windows" and r["fp_at_0.5"] >= 0
    summary = run.summary()
    assert summary["standard"] == 100.0 and summary["thresholds"]["standard"] == 1.1


def test_scores_are_still_validated_without_windows():
    corpus = Corpus(Path("."), [_file("a/quiet.csv")])
    with pytest.raises(ValueError, match="length"):
        score_run(corpus, [np.zeros(3)])


def test_mixed_corpus_is_scored_normally():
    corpus = Corpus(Path("."), [_file("a/quiet.csv"), _file("b/fault.csv", spike=300, windows=[(290, 310)])])
    run = run_corpus("robust_z", corpus)
    std = run.results["standard"]
    assert "note" not in std and std["tp"] == 1 and std["score"] > 0
