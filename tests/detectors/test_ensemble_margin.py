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
