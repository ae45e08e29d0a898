"""Window rules: every aggregate, window edges, late points, and the aggregate helpers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.windows import Buffer, aggregate, percentile


def win(agg, op, value, window="10s"):
    return {
        "kind": "window", "id": "w", "metric": "x", "agg": agg, "window": window, "op": op, "value": value,
        "target": {"devices": ["d1"]},
    }


# readings at seconds 0..5 with these values; evaluation happens at each reading
SERIES = [(0, 1.0), (2, 3.0), (4, 5.0), (6, 7.0), (8, 100.0)]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # avg over (t-10, t]: 1, 2, 3, 4, 23.2
        (win("avg", ">", 3.5), [(6, "inactive", "firing")]),
        (win("avg", ">", 3.99), [(6, "inactive", "firing")]),
        (win("avg", ">", 4.0), [(8, "inactive", "firing")]),
        (win("avg", ">", 23.2), []),
        (win("min", ">=", 1), [(0, "inactive", "firing")]),
        # 10s window: at t=12 the point at 2 is still inside, at t=14 it left
        (win("max", ">=", 50), [(8, "inactive", "firing")]),
        (win("count", ">=", 4), [(6, "inactive", "firing")]),
        # rate = (last-first)/(span s): at 6: (7-1)/6 = 1.0 ; at 8: 99/8
        (win("rate", ">", 1.0), [(8, "inactive", "firing")]),
        (win("rate", ">=", 1.0), [(2, "inactive", "firing")]),
        # p95 at t=8 over [1,3,5,7,100]: rank 3.8 → 7 + 0.8*93 = 81.4
        (win("p95", ">", 81.39), [(8, "inactive", "firing")]),
        (win("p95", ">", 81.41), []),
    ],
)
def test_window_aggregates_fire_at_the_right_reading(kit, rule, expected):
    eng = kit.engine([rule])
    out = kit.run(eng, [(s, "d1", {"x": v}) for s, v in SERIES])
    assert [(s, f, to) for s, _, f, to in kit.brief(out)] == expected
    if expected:
        assert out[0].value is not None and eng.alerts()[0].value is not None


def test_window_edge_is_open_on_the_left(kit):
    # at t=10 the point at t=0 is out ((0, 10]); max drops from 100 to 1
    eng = kit.engine([win("max", ">", 50)])
    out = kit.run(eng, [(0, "d1", {"x": 100}), (9.999, "d1", {"x": 1}), (10, "d1", {"x": 1})])
    assert kit.brief(out) == [(0, "d1", "inactive", "firing"), (10, "d1", "firing", "resolved")]


def test_count_window_counts_only_points_in_window(kit):
    eng = kit.engine([win("count", "<", 2, window="5s")])
    out = kit.run(eng, [(0, "d1", {"x": 1}), (1, "d1", {"x": 1}), (20, "d1", {"x": 1}), (21, "d1", {"x": 1})])
    # t=0: 1 point → breach; t=1: 2 → clear; t=20: 1 → breach; t=21: 2 → clear
    assert [(s, to) for s, _, _, to in kit.brief(out)] == [(0, "firing"), (1, "resolved"), (20, "firing"), (21, "resolved")]


def test_late_point_is_inserted_into_the_window_but_not_evaluated(kit):
    eng = kit.engine([win("avg", ">", 30, window="30s")])
    out = kit.run(eng, [(10, "d1", {"x": 10}), (20, "d1", {"x": 10}), (15, "d1", {"x": 100})])
    assert out == []  # the late point did not evaluate
    out = kit.run(eng, [(25, "d1", {"x": 10})])
    # avg(10, 100, 10, 10) = 32.5 thanks to the late point
    assert kit.brief(out) == [(25, "d1", "inactive", "firing")]
    assert out[0].value == pytest.approx(32.5)


def test_rate_needs_two_points_with_a_time_span(kit):
    eng = kit.engine([win("rate", ">", -1e9)])
    out = kit.run(eng, [(0, "d1", {"x": 1}), (0, "d1", {"x": 2})])
    assert out == []  # same timestamp: undefined, no evaluation
    out = kit.run(eng, [(2, "d1", {"x": 6})])
    assert out[0].value == pytest.approx(2.5)  # (6-1)/2 s


def test_retention_keeps_buffers_bounded(kit):
    eng = kit.engine([win("max", ">", 1e9, window="10s")])
    kit.run(eng, [(s, "d1", {"x": s}) for s in range(0, 1000, 1)])
    snap = eng.snapshot()
    (d1,) = [d for d in snap["devices"] if d["device_id"] == "d1"]
    ts, _ = d1["windows"]["x"]
    assert len(ts) == 10  # only the points that can still be inside a 10 s window


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60), st.sampled_from([50.0, 95.0, 99.0, 0.0, 100.0]))
def test_percentile_matches_numpy(values, q):
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.floats(-100, 100)), max_size=40), st.integers(1, 30))
def test_buffer_slice_matches_brute_force(points, width):
    buf = Buffer()
    for t, v in points:  # arbitrary (late) order
        buf.add(t, v)
    assert buf.ts == sorted(buf.ts)
    now = max((t for t, _ in points), default=0)
    ts, vals = buf.slice(now, width)
    expected = sorted((t, v) for t, v in points if now - width < t <= now)
    assert sorted(zip(ts, vals)) == expected
    assert aggregate("count", ts, vals) == len(expected)
    if expected:
        assert aggregate("max", ts, vals) == max(v for _, v in expected)
        assert aggregate("avg", ts, vals) == pytest.approx(sum(v for _, v in expected) / len(expected))
