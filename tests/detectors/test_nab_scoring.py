"""The NAB scorer against SCORING.md: hand-built weights, a brute-force reference of the
sweep pseudocode, and the published numbers that are reproducible (null, perfect)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from detectors.scoring import MAX_TP, PROFILES, CorpusScorer, probationary_length, row_weights, scaled_sigmoid
from detectors.nab import load_corpus, resolve_nab_dir, NabNotFoundError

STD = PROFILES["standard"]


def test_scaled_sigmoid_reference_values():
    assert MAX_TP == pytest.approx(0.9866142981514305, abs=1e-15)
    assert float(scaled_sigmoid(-0.5)) == pytest.approx(0.84828, abs=1e-5)
    assert float(scaled_sigmoid(0.0)) == 0.0
    assert float(scaled_sigmoid(1.0)) == pytest.approx(-0.98661, abs=1e-5)
    assert float(scaled_sigmoid(3.0001)) == -1.0
    assert float(scaled_sigmoid(3.0)) == pytest.approx(2 / (1 + math.exp(15)) - 1)


def test_probationary_length():
    assert probationary_length(1000) == 150
    assert probationary_length(5000) == 750
    assert probationary_length(22695) == 750
    assert probationary_length(1127) == 169


def test_row_weights_window_edges_and_fp_after_window():
    n, windows = 100, [(20, 29), (60, 69)]
    v, wid = row_weights(n, windows, STD)
    W = 10
    assert v[20] == pytest.approx(1.0)  # left edge = A_TP exactly
    assert v[29] == pytest.approx(float(scaled_sigmoid(-1 / W)) / MAX_TP)  # right edge: small positive
    assert 0 < v[29] < v[25] < v[20]
    assert np.all(np.diff(v[20:30]) < 0)  # monotonically falling inside the window
    assert list(wid[20:30]) == [0] * 10 and wid[30] == -1 and list(wid[60:70]) == [1] * 10
    assert np.all(v[:20] == -0.11)  # before the first window: full FP penalty
    # after a window: y = (i - e')/(W' - 1), penalty ~0 right after, growing to -A_FP
    assert v[30] == pytest.approx(0.11 * float(scaled_sigmoid(1 / 9)))
    assert -0.11 < v[30] < 0
    assert np.all(np.diff(v[30:60]) <= 0)
    assert v[59] == pytest.approx(0.11 * float(scaled_sigmoid(29 / 9)))  # y > 3 → -1
    assert v[59] == -0.11
    # only the preceding window counts: after the second window the first is irrelevant
    assert v[70] == pytest.approx(0.11 * float(scaled_sigmoid(1 / 9)))


def _reference_sweep(files, scores, profile):
    """Literal transcription of the SCORING.md §3.8 pseudocode (slow, obviously right)."""
    pts, wid_off = [], 0
    for (n, windows), s in zip(files, scores):
        v, wid = row_weights(n, windows, profile)
        for i in range(probationary_length(n), n):
            pts.append((s[i], None if wid[i] < 0 else int(wid[i]) + wid_off, v[i]))
        wid_off += len(windows)
    pts.sort(key=lambda p: -p[0])
    part = {w: -profile.fn for w in range(wid_off)}
    fp = 0.0
    best_t, best = 1.1, fp + sum(part.values())
    i = 0
    while i < len(pts):
        t = pts[i][0]
        while i < len(pts) and pts[i][0] == t:
            _, w, v = pts[i]
            if w is None:
                fp += v
            else:
                part[w] = max(part[w], v)
            i += 1
        total = fp + sum(part.values())
        if total > best:
            best_t, best = t, total
    return best_t, best


@pytest.mark.parametrize("profile", list(PROFILES))
def test_sweep_matches_reference_pseudocode(profile):
    rng = np.random.default_rng(7)
    files = [(400, [(100, 139), (250, 289)]), (300, [(200, 229)]), (250, [])]
    scores = []
    for n, _ in files:
        s = np.round(rng.random(n) ** 4, 2)  # rounding creates many ties
        scores.append(s)
    scores[0][101] = 0.99  # an early hit
    prof = PROFILES[profile]
    scorer = CorpusScorer(files, prof)
    res = scorer.sweep(scores)
    ref_t, ref = _reference_sweep(files, scores, prof)
    assert res.threshold == ref_t
    assert res.raw_score == pytest.approx(ref, abs=1e-9)
    assert scorer.raw_at(scores, ref_t) == pytest.approx(ref, abs=1e-9)
    assert res.normalized == pytest.approx(100 * (ref + prof.fn * 3) / ((prof.tp + prof.fn) * 3))


def test_earliest_detection_counts_and_fp_costs():
    files = [(200, [(100, 109)])]  # P = 30
    scorer = CorpusScorer(files, STD)
    s = np.zeros(200)
    s[[100, 105]] = 1.0  # hit at the left edge, later hit adds nothing
    assert scorer.raw_at([s], 0.5) == pytest.approx(1.0)
    s[50] = 1.0  # FP before the window: full -A_FP
    assert scorer.raw_at([s], 0.5) == pytest.approx(1.0 - 0.11)
    s[10] = 1.0  # inside the probationary period: ignored
    assert scorer.raw_at([s], 0.5) == pytest.approx(1.0 - 0.11)
    miss = np.zeros(200)
    assert scorer.raw_at([miss], 0.5) == -1.0
    res = scorer.sweep([miss])
    assert res.threshold == 1.1 and res.normalized == 0.0


def test_twiddle_finds_the_obvious_optimum():
    files = [(200, [(100, 109)])]
    s = np.zeros(200)
    s[100] = 0.8
    scorer = CorpusScorer(files, STD)
    res = scorer.twiddle([s])
    assert res.raw_score == pytest.approx(1.0)
    assert 0.0 < res.threshold <= 0.8


def test_scores_outside_unit_interval_are_rejected():
    scorer = CorpusScorer([(100, [])], STD)
    with pytest.raises(ValueError):
        scorer.sweep([np.full(100, 1.5)])
    with pytest.raises(ValueError):
        scorer.sweep([np.full(100, np.nan)])


@pytest.fixture(scope="module")
def corpus():
    try:
        resolve_nab_dir()
    except NabNotFoundError as exc:
        pytest.skip(f"NAB corpus absent: {exc}")
    return load_corpus()


def test_corpus_facts_match_scoring_md(corpus):
    assert len(corpus.files) == 58
    assert corpus.n_points == 365_558
    assert sum(len(f.windows) for f in corpus.files) == 116
    assert sum(len(f.values) - f.probation for f in corpus.files) == 332_842
    assert sum(int(f.labels().sum()) for f in corpus.files) == 33_495
    assert all(f.labels()[: f.probation].sum() == 0 for f in corpus.files)  # no window in probation


def test_published_null_and_perfect_are_reproduced(corpus):
    published = json.loads((corpus.root / "results" / "final_results.json").read_text())["null"]
    const = [np.full(len(f.values), 0.5) for f in corpus.files]
    perfect = []
    for f in corpus.files:
        s = np.zeros(len(f.values))
        for start, _ in f.windows:
            s[start] = 1.0
        perfect.append(s)
    for name, scorer in corpus.scorers().items():
        assert scorer.null_score() == -scorer.profile.fn * 116
        res = scorer.sweep(const)
        assert res.normalized == pytest.approx(published[name], abs=1e-12)
        assert res.threshold == 1.1
        assert scorer.sweep(perfect).normalized == pytest.approx(100.0)
