"""Property: the live engine (observe as readings come, advance on a simulated clock at
arbitrary instants, sleep-until-next_deadline) and the backtest produce the identical
transition sequence for the same readings and rules. Also: snapshot/restore mid-stream
does not change the sequence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerting.backtest import backtest
from alerting.engine import DeviceInfo, Engine, Reading

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DEVICES = [
    DeviceInfo("t", "d0", "s0", {"line": "a"}, "pump"),
    DeviceInfo("t", "d1", "s0", {"line": "b"}, "pump"),
    DeviceInfo("t", "d2", "s1", {"line": "a"}, "fan"),
]
OPS = [">", ">=", "<", "<=", "==", "!="]
METRICS = ["a", "b"]

small = st.integers(min_value=0, max_value=10).map(float)


@st.composite
def threshold_cond(draw):
    op = draw(st.sampled_from(OPS))
    value = draw(small)
    c = {"kind": "threshold", "metric": draw(st.sampled_from(METRICS)), "op": op, "value": value}
    if op in (">", ">=") and draw(st.booleans()):
        c["clear"] = value - draw(st.integers(0, 3))
    if op in ("<", "<=") and draw(st.booleans()):
        c["clear"] = value + draw(st.integers(0, 3))
    return c


window_cond = st.builds(
    lambda m, agg, w, op, v: {"kind": "window", "metric": m, "agg": agg, "window": w, "op": op, "value": v},
    st.sampled_from(METRICS),
    st.sampled_from(["avg", "min", "max", "count", "rate", "p95"]),
    st.sampled_from([3, 10, "30s"]),
    st.sampled_from(OPS),
    st.integers(-1, 6).map(float),
)
absence_cond = st.builds(
    lambda m, d: {"kind": "absence", "metric": m, "duration": d},
    st.sampled_from([None, "a", "b"]),
    st.sampled_from([4, 9.5, "20s"]),
)
anomaly_cond = st.builds(
    lambda th: {"kind": "anomaly", "metric": "a", "threshold": th}, st.sampled_from([0.3, 0.5, 0.9])
)
simple_cond = st.one_of(threshold_cond(), window_cond, absence_cond, anomaly_cond)


@st.composite
def composite_cond(draw):
    mode = draw(st.sampled_from(["all", "any", "not"]))
    n = 1 if mode == "not" else draw(st.integers(1, 3))
    return {"kind": "composite", "mode": mode, "conditions": [draw(simple_cond) for _ in range(n)]}


@st.composite
def rules_strategy(draw):
    n = draw(st.integers(1, 4))
    rules = []
    for i in range(n):
        kind = draw(st.sampled_from(["simple", "simple", "composite", "fleet"]))
        if kind == "fleet":
            r = {
                "kind": "fleet",
                "condition": draw(st.one_of(simple_cond, composite_cond())),
                "percent": draw(st.sampled_from([30, 50, 100])),
                "group_by": draw(st.sampled_from(["tenant", "site"])),
            }
        elif kind == "composite":
            r = draw(composite_cond())
            if r["mode"] != "not" and rules and rules[0]["kind"] != "fleet" and draw(st.booleans()):
                r["conditions"].append({"kind": "rule", "rule": "r0"})  # reuse r0's condition
        else:
            r = dict(draw(simple_cond))
        r["id"] = f"r{i}"
        r["for"] = draw(st.sampled_from([0, 0, 2, 7.5]))
        r["keep_firing_for"] = draw(st.sampled_from([0, 0, 3, 10]))
        if draw(st.booleans()):
            r["resolve_after"] = draw(st.sampled_from([6, 25]))
        if draw(st.booleans()):
            r["flapping"] = {"window": draw(st.integers(2, 6)), "threshold": draw(st.sampled_from([0.3, 0.5]))}
        r["shadow"] = draw(st.booleans())
        if draw(st.booleans()):
            r["target"] = draw(st.sampled_from([{"site": "s0"}, {"tags": {"line": "a"}}, {"devices": ["d1", "d2"]}]))
        rules.append(r)
    return rules


@st.composite
def readings_strategy(draw):
    n = draw(st.integers(0, 40))
    t = T0
    out = []
    for _ in range(n):
        t = t + timedelta(seconds=draw(st.sampled_from([0, 0.5, 1, 2, 3, 5, 8, 13, 30])))
        names = draw(st.lists(st.sampled_from(["a", "b", "anomaly_score.a"]), min_size=1, max_size=3, unique=True))
        metrics = {m: (draw(st.sampled_from([0.1, 0.4, 0.95])) if m.startswith("anomaly") else draw(small)) for m in names}
        # d9 is not in the inventory: the engine registers it on first sight
        out.append(Reading("t", draw(st.sampled_from(["d0", "d1", "d2", "d9"])), t, metrics))
    return out


def run_live(rules, readings, end, ticks, follow_deadlines):
    """A live worker: a simulated wall clock ticks at arbitrary instants between readings,
    the loop may also wake exactly at next_deadline(), readings arrive with zero latency."""
    eng = Engine(rules, DEVICES, clock_start=T0)
    out = []
    prev = T0
    for i, r in enumerate(readings):
        for f in sorted(ticks[i % len(ticks)]) if ticks else ():
            out += eng.advance(prev + (r.ts - prev) * f)
        while follow_deadlines and (nd := eng.next_deadline()) is not None and nd <= r.ts:
            out += eng.advance(nd)
        out += eng.observe(r)
        prev = r.ts
    out += eng.advance(end)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    rules=rules_strategy(),
    readings=readings_strategy(),
    ticks=st.lists(st.lists(st.floats(0, 1), max_size=3), max_size=5),
    follow=st.booleans(),
    step=st.sampled_from([None, 1, 4, 17]),
    tail=st.sampled_from([0, 5, 60]),
)
def test_live_equals_backtest(rules, readings, ticks, follow, step, tail):
    end = (readings[-1].ts if readings else T0) + timedelta(seconds=tail)
    live = run_live(rules, readings, end, ticks, follow)
    report = backtest(rules, DEVICES, readings, T0, end, step=None if step is None else timedelta(seconds=step))
    assert report.transitions == live
    assert report.readings == len(readings)
    # every fingerprint's history is monotone in time and a valid chain of states
    last_at, last_state, open_id = {}, {}, {}
    for tr in live:
        fp = tr.fingerprint
        assert tr.at >= last_at.get(fp, T0)
        prev = last_state.get(fp, "resolved")
        assert tr.from_state == ("inactive" if prev == "resolved" else prev), (fp, prev, tr)
        assert tr.to_state not in ("inactive", "acknowledged")  # no operator in this test
        if tr.from_state == "inactive":
            assert tr.alert_id not in open_id.values()
            open_id[fp] = tr.alert_id
        assert tr.alert_id == open_id[fp]
        assert not (tr.shadow and tr.notify)
        last_at[fp], last_state[fp] = tr.at, tr.to_state


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rules=rules_strategy(), readings=readings_strategy(), cut=st.floats(0, 1), windows=st.booleans())
def test_snapshot_restore_mid_stream_is_transparent(rules, readings, cut, windows):
    end = (readings[-1].ts if readings else T0) + timedelta(seconds=40)
    k = int(len(readings) * cut)
    ref = Engine(rules, DEVICES, clock_start=T0)
    expected = [t for r in readings for t in ref.observe(r)] + ref.advance(end)

    first = Engine(rules, DEVICES, clock_start=T0)
    got = [t for r in readings[:k] for t in first.observe(r)]
    snap = json.loads(json.dumps(first.snapshot(include_windows=windows)))
    second = Engine.restore(snap, rules, DEVICES)
    assert second.restore_transitions == []
    if not windows:
        # a snapshot without windows: the lead re-feeds recent readings from the database
        second.rebuild_windows(readings[:k])
    got += [t for r in readings[k:] for t in second.observe(r)] + second.advance(end)
    assert got == expected
    assert second.alerts() == ref.alerts()
