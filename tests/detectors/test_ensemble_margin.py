"""The ensemble's margin suppression: one alarm per event, clear events ranked first."""

from __future__ import annotations

import numpy as np

from detectors import registry
from detectors.novelty import _margin_suppress


def test_margin_suppression_keeps_new_highs_only_and_ranks_by_excess():
    s = np.array([0.5, 0.8, 0.7, 0.9, 0.2, 0.2, 0.2, 0.6])
    out = _margin_suppress(s, window=3, margin=0.25)
    kept = out > 0
    assert kept.tolist() == [True, True, False, True, False, False, False, True]
    # 0.9 beats 0.8 by 0.1; 0.6 beats 0.2 by 0.4: the clearer event ranks higher than its raw score alone
    assert out[3] == np.float64(0.75 * 0.9 + 0.25 * 0.1)
    assert out[7] == np.float64(0.75 * 0.6 + 0.25 * 0.4)
    np.testing.assert_array_equal(_margin_suppress(s, 3, 0.0), np.where(kept, s, 0.0))


def test_previous_default_is_reachable_by_params():
    p = registry.validate_params("ensemble", {"long_smooth": 0, "margin": 0.0})
    assert p["long_smooth"] == 0 and p["margin"] == 0.0
    rng = np.random.default_rng(3)
    x = 5 + rng.standard_normal(400)
    x[350] += 10
    det = registry.create("ensemble", long_smooth=0, margin=0.0).fit(x[:200])
    s = det.score(x[200:])
    assert s.argmax() == 150


def test_default_is_value_plus_pattern_novelty_and_old_default_is_a_param_set():
    d = registry.validate_params("ensemble", {})
    assert d["w_pattern"] > 0 and d["w_transition"] > 0
    # the value-novelty-only ensemble (the default until the pattern members) is
    # reachable by parameters alone
    old = {"prior": 3.0, "w_smooth": 0.9, "w_long": 0.9, "w_pattern": 0.0, "w_transition": 0.0, "suppress_frac": 0.5}
    assert registry.validate_params("ensemble", old)["w_pattern"] == 0.0


def _periodic_with_missing_peak(n=2000, period=100, gap=1450, seed=5):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = 1 + 0.05 * rng.standard_normal(n) + 5 * np.exp(-0.5 * ((t % period) - period // 2) ** 2 / 9.0)
    x[gap - 10 : gap + 10] = 1 + 0.05 * rng.standard_normal(20)  # one peak never comes
    return x


def test_pattern_novelty_flags_a_missing_peak_whose_values_are_all_ordinary():
    from detectors.pattern import PatternNN

    x = _periodic_with_missing_peak()
    block, length = 300 // 40, 16
    member = PatternNN(float(x.min()), float(x.max()), block, length, prior=2.0, warmup=int(0.5 * 300 / block))
    s = member.scores(x)
    top = int(np.argmax(s[300:])) + 300
    # the first window that contains the gap (or one of the next few) is the most novel
    assert 1450 <= top <= 1450 + block * length, top


def test_pattern_state_is_not_mutated_by_score_and_streams_exactly():
    x = _periodic_with_missing_peak(n=1600)
    x[[700, 701, 1200]] = np.nan
    det = registry.create("ensemble").fit(x[:300])
    s1 = det.score(x[300:])
    np.testing.assert_array_equal(s1, det.score(x[300:]))
    det.reset_stream()
    stream = np.array([det.update(i, v) for i, v in enumerate(x[300:])])
    np.testing.assert_allclose(stream, s1, rtol=1e-9, atol=1e-12)
    assert s1[400] == 0.0 and s1[900] == 0.0  # NaN rows score 0
