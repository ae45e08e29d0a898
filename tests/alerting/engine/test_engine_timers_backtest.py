"""TimerWheel behaviour and the backtest report's numbers."""

from __future__ import annotations

import heapq
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.backtest import backtest
from alerting.engine import AlertState, Reading
from alerting.timers import TimerWheel


def test_wheel_schedule_cancel_reschedule():
    w: TimerWheel[str] = TimerWheel()
    w.schedule("b", 20)
    w.schedule("a", 20)
    w.schedule("c", 5)
    w.schedule("c", 30)  # reschedule later
    assert w.next_deadline() == 20 and len(w) == 3 and w.deadline("c") == 30
    assert w.cancel("a") and not w.cancel("a")
    assert w.pop_due(19) is None
    assert w.pop_due(25) == (20, "b")
    assert w.pop_due(25) is None
    assert w.pop_due(30) == (30, "c")
    assert len(w) == 0 and w.next_deadline() is None


def test_wheel_ties_break_by_key_not_insertion_order():
    w: TimerWheel[tuple[str, ...]] = TimerWheel()
    for key in [("z",), ("a",), ("m",)]:
        w.schedule(key, 7)
    assert [w.pop_due(7)[1] for _ in range(3)] == [("a",), ("m",), ("z",)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["s", "c"]), st.integers(0, 30), st.integers(0, 100)), max_size=300))
def test_wheel_matches_a_reference_model(ops):
    w: TimerWheel[int] = TimerWheel()
    model: dict[int, int] = {}
    for op, key, deadline in ops:
        if op == "s":
            w.schedule(key, deadline)
            model[key] = deadline
        else:
            assert w.cancel(key) == (model.pop(key, None) is not None)
    assert len(w) == len(model)
    assert w.next_deadline() == (min(model.values()) if model else None)
    popped = []
    while (item := w.pop_due(60)) is not None:
        popped.append(item)
    expected = heapq.nsmallest(len(model), ((d, k) for k, d in model.items() if d <= 60))
    assert popped == expected
    assert len(w._heap) <= 2 * len(w) + 130  # lazy deletion stays bounded


def test_backtest_report_counts(kit):
    rules = [
        {"kind": "threshold", "id": "hot", "metric": "temp", "op": ">", "value": 80, "target": {"devices": ["d1"]}},
        {"kind": "threshold", "id": "hot-shadow", "metric": "temp", "op": ">", "value": 85, "shadow": True, "target": {"devices": ["d1"]}},
        {
            "kind": "threshold", "id": "flappy", "metric": "temp", "op": ">", "value": 50, "target": {"devices": ["d2"]},
            "flapping": {"window": 4, "threshold": 0.5},
        },
    ]
    readings = [
        kit.reading(3600, "d1", temp=90),  # hot + shadow fire
        kit.reading(7200, "d1", temp=10),  # both resolve: 1 h in alert
        kit.reading(10800, "d1", temp=99),  # hot + shadow fire again, open at the end
        *[kit.reading(100 + i, "d2", temp=(60 if i % 2 == 0 else 40)) for i in range(8)],
        kit.reading(-5, "d1", temp=99),  # before start: skipped
    ]
    end = kit.at(2 * 86400)
    rep = backtest(rules, kit.DEVICES, readings, kit.T0, end, step=timedelta(minutes=10))
    assert rep.readings == 11 and rep.skipped == 1
    hot, shadow, flappy = rep.per_rule["hot"], rep.per_rule["hot-shadow"], rep.per_rule["flappy"]
    assert (hot.alerts_fired, hot.pages) == (2, 2)
    assert (shadow.alerts_fired, shadow.pages, shadow.shadow) == (2, 2, True)
    assert flappy.flaps == 1 and flappy.alerts_fired == 2 and flappy.pages == 2  # #1 fired+resolved, #2 fired then went flapping (no new page)
    assert hot.time_in_alert == timedelta(hours=1) + (end - kit.at(10800))
    assert rep.time_in_alert["hot"] == hot.time_in_alert
    assert rep.pages == hot.pages + flappy.pages  # shadow pages are not real pages
    assert rep.pages_per_day == pytest.approx(rep.pages / 2)
    assert rep.flaps == 1
    assert {a.rule_id for a in rep.open_at_end} == {"hot", "hot-shadow", "flappy"}
    assert all(t.shadow and not t.notify for t in rep.transitions if t.rule_id == "hot-shadow")


def test_backtest_orders_readings_by_time_and_rejects_bad_ranges(kit):
    rules = [{"kind": "threshold", "id": "hot", "metric": "temp", "op": ">", "value": 80}]
    r1, r2 = kit.reading(5, "d1", temp=90), kit.reading(10, "d1", temp=10)
    forward = backtest(rules, kit.DEVICES, [r1, r2], kit.T0, kit.at(20)).transitions
    shuffled = backtest(rules, kit.DEVICES, [r2, r1], kit.T0, kit.at(20)).transitions
    assert forward == shuffled
    assert [t.to_state for t in forward] == [AlertState.FIRING, AlertState.RESOLVED]
    with pytest.raises(ValueError):
        backtest(rules, kit.DEVICES, [], kit.at(10), kit.at(5))
    with pytest.raises(ValueError):
        backtest(rules, kit.DEVICES, [], kit.T0, kit.at(5), step=timedelta(0))


def test_backtest_fires_absence_between_and_after_readings(kit):
    rules = [{"kind": "absence", "id": "quiet", "duration": "1h", "target": {"devices": ["d1"]}}]
    readings = [Reading("t", "d1", kit.at(h * 3600), {"x": 1.0}) for h in (0, 3)]
    rep = backtest(rules, kit.DEVICES, readings, kit.T0, kit.at(6 * 3600))
    assert kit.brief(rep.transitions) == [
        (3600, "d1", "inactive", "firing"),
        (10800, "d1", "firing", "resolved"),
        (14400, "d1", "inactive", "firing"),
    ]
    assert rep.per_rule["quiet"].time_in_alert == timedelta(hours=2 + 2)
