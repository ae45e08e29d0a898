"""Threshold rules and the generic lifecycle: hysteresis, for, keep_firing_for, ack,
manual resolve, shadow, labels, late and cross-device-late readings."""

from __future__ import annotations

import pytest

from alerting.engine import AlertState, Fingerprint


def thr(op=">", value=80.0, clear=None, **extra):
    r = {"kind": "threshold", "id": "hot", "metric": "temp", "op": op, "value": value, "target": {"devices": ["d1"]}}
    if clear is not None:
        r["clear"] = clear
    r.update(extra)
    return r


FP = Fingerprint("t", "hot", "d1")


@pytest.mark.parametrize(
    ("rule", "values", "expected"),
    [
        # exactly at the threshold is not a breach for '>'
        (thr(), [80, 80.0001, 80], [(2, "inactive", "firing"), (3, "firing", "resolved")]),
        # hysteresis: stays firing down to (not including) the clear level
        (thr(clear=70), [85, 71, 70.0001, 75, 79], [(1, "inactive", "firing")]),
        (thr(clear=70), [85, 70], [(1, "inactive", "firing"), (2, "firing", "resolved")]),
        # after clearing, re-entry needs the fire level again, not the clear level
        (thr(clear=70), [85, 70, 75, 80, 81], [(1, "inactive", "firing"), (2, "firing", "resolved"), (5, "inactive", "firing")]),
        # '>=' with clear: 70 still holds (70 >= 70), 69.9 clears
        (thr(op=">=", clear=70), [80, 70, 69.9], [(1, "inactive", "firing"), (3, "firing", "resolved")]),
        # '<' with an upper clear level
        (thr(op="<", value=10, clear=15), [10, 9.9, 14.9, 15], [(2, "inactive", "firing"), (4, "firing", "resolved")]),
        (thr(op="<=", value=10), [10, 10.1], [(1, "inactive", "firing"), (2, "firing", "resolved")]),
        (thr(op="==", value=3), [2, 3, 3, 4], [(2, "inactive", "firing"), (4, "firing", "resolved")]),
        (thr(op="!=", value=3), [3, 2, 3], [(2, "inactive", "firing"), (3, "firing", "resolved")]),
    ],
)
def test_threshold_and_hysteresis_boundaries(kit, rule, values, expected):
    eng = kit.engine([rule])
    out = kit.run(eng, [(i + 1, "d1", {"temp": v}) for i, v in enumerate(values)])
    assert [(s, f, to) for s, _, f, to in kit.brief(out)] == expected


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # uninterrupted: fires exactly at start + for, on advance with no reading
        (
            [(0, "d1", {"temp": 90}), (5, "d1", {"temp": 91}), (30, "advance")],
            [(0, "inactive", "pending"), (10, "pending", "firing")],
        ),
        # one good reading interrupts `for`; the next breach restarts the clock
        (
            [(0, "d1", {"temp": 90}), (8, "d1", {"temp": 50}), (9, "d1", {"temp": 90}), (15, "d1", {"temp": 90}), (19, "d1", {"temp": 90})],
            [(0, "inactive", "pending"), (8, "pending", "resolved"), (9, "inactive", "pending"), (19, "pending", "firing")],
        ),
        # a reading exactly at the deadline: the timer fires first (deadline <= ts)
        (
            [(0, "d1", {"temp": 90}), (10, "d1", {"temp": 50})],
            [(0, "inactive", "pending"), (10, "pending", "firing"), (10, "firing", "resolved")],
        ),
    ],
)
def test_for_duration(kit, steps, expected):
    eng = kit.engine([thr(**{"for": "10s"})])
    out = kit.run(eng, steps)
    assert [(s, f, to) for s, _, f, to in kit.brief(out)] == expected
    pending = [t for t in out if t.to_state is AlertState.PENDING]
    assert pending and all(not t.notify for t in pending)


def test_keep_firing_for_survives_gaps_and_resolves_after_quiet_period(kit):
    eng = kit.engine([thr(keep_firing_for="10s")])
    out = kit.run(
        eng,
        [
            (0, "d1", {"temp": 90}),
            (5, "d1", {"temp": 50}),  # clear: resolve scheduled for 15
            (12, "d1", {"temp": 95}),  # re-breach before 15: cancelled
            (20, "d1", {"temp": 50}),  # clear again: resolve at 30
            (25, "d1", {"temp": 40}),  # still clear: does not push the deadline
        ],
    )
    assert kit.brief(out) == [(0, "d1", "inactive", "firing")]
    assert eng.next_deadline() == kit.at(30)
    assert eng.alert(FP).count == 2  # two breaching evaluations
    out = eng.advance(kit.at(60))
    assert kit.brief(out) == [(30, "d1", "firing", "resolved")]
    assert out[0].notify and "keep_firing_for" in out[0].reason
    assert eng.alerts() == []


def test_ack_then_rebreach_opens_a_new_alert(kit):
    eng = kit.engine([thr()])
    out = kit.run(
        eng,
        [
            (0, "d1", {"temp": 90}),
            (1, "ack", FP),
            (1.5, "ack", str(FP)),  # second ack: no-op, string fingerprints accepted
            (2, "d1", {"temp": 95}),  # still breaching: stays acknowledged, no event
            (3, "d1", {"temp": 50}),
            (4, "d1", {"temp": 96}),
        ],
    )
    assert kit.brief(out) == [
        (0, "d1", "inactive", "firing"),
        (1, "d1", "firing", "acknowledged"),
        (3, "d1", "acknowledged", "resolved"),
        (4, "d1", "inactive", "firing"),
    ]
    assert out[0].alert_id != out[-1].alert_id
    assert out[0].alert_id == out[2].alert_id
    assert out[2].count == 2


def test_ack_of_pending_or_unknown_is_a_noop(kit):
    eng = kit.engine([thr(**{"for": 30})])
    kit.run(eng, [(0, "d1", {"temp": 90})])
    assert eng.acknowledge(FP, kit.at(1)) == []
    assert eng.acknowledge(Fingerprint("t", "nope", "d1"), kit.at(1)) == []
    assert eng.resolve(Fingerprint("t", "hot", "d9"), kit.at(1)) == []


@pytest.mark.parametrize(
    ("for_", "expected"),
    [
        (0, [(0, "inactive", "firing"), (1, "firing", "resolved"), (2, "inactive", "firing")]),
        (5, [(0, "inactive", "pending"), (5, "pending", "firing"), (6, "firing", "resolved"), (7, "inactive", "pending"), (12, "pending", "firing")]),
    ],
)
def test_resolve_by_hand_while_breaching_refires(kit, for_, expected):
    eng = kit.engine([thr(**{"for": for_})])
    steps = [(0, "d1", {"temp": 90}), (for_, "advance"), (for_ + 1, "resolve", FP), (for_ + 2, "d1", {"temp": 91}), (60, "advance")]
    out = kit.run(eng, steps)
    assert [(s, f, to) for s, _, f, to in kit.brief(out)] == expected
    manual = [t for t in out if t.reason == "resolved by hand"]
    assert len(manual) == 1
    assert len({t.alert_id for t in out}) == 2


def test_shadow_rules_record_but_never_notify(kit):
    eng = kit.engine([thr(shadow=True)])
    out = kit.run(eng, [(0, "d1", {"temp": 90}), (1, "d1", {"temp": 10})])
    assert [t.to_state for t in out] == [AlertState.FIRING, AlertState.RESOLVED]
    assert all(t.shadow and not t.notify for t in out)


def test_transition_carries_labels_severity_and_identity(kit):
    eng = kit.engine([thr(severity="critical", labels={"team": "ops", "tenant_id": "spoof"})])
    (tr,) = kit.run(eng, [(0, "d1", {"temp": 90})])
    assert tr.fingerprint == FP and tr.rule_id == "hot" and tr.tenant_id == "t" and tr.device_id == "d1"
    assert tr.severity == "critical" and tr.notify and tr.value == 90 and tr.count == 1
    assert tr.labels == {
        "team": "ops",
        "tenant_id": "t",  # identity labels cannot be overridden by rule labels
        "rule_id": "hot",
        "severity": "critical",
        "device_id": "d1",
        "site_id": "s1",
        "device_type": "pump",
        "tag.line": "a",
    }
    (a,) = eng.alerts()
    assert a.state is AlertState.FIRING and a.fired_at == kit.at(0) and a.alert_id == tr.alert_id


@pytest.mark.parametrize(
    ("target", "fired"),
    [
        ({"site": "s2"}, ["d3", "d4"]),
        ({"tags": {"line": "a"}}, ["d1", "d3"]),
        ({"site": ["s1"], "tags": {"line": "b"}}, ["d2"]),
        ({"device_type": "fan", "devices": ["d1", "d4"]}, ["d4"]),
        ({"tenant": "other"}, []),
    ],
)
def test_target_selector(kit, target, fired):
    eng = kit.engine([thr(target=target)])
    out = kit.run(eng, [(1, d, {"temp": 99}) for d in ("d1", "d2", "d3", "d4")])
    assert [t.device_id for t in out] == fired


def test_late_reading_updates_nothing_and_never_reorders(kit):
    eng = kit.engine([thr()])
    out = kit.run(eng, [(10, "d1", {"temp": 90}), (5, "d1", {"temp": 50})])
    assert kit.brief(out) == [(10, "d1", "inactive", "firing")]
    assert eng.alerts()[0].state is AlertState.FIRING
    out = kit.run(eng, [(11, "d1", {"temp": 50})])
    assert kit.brief(out) == [(11, "d1", "firing", "resolved")]


def test_reading_behind_the_engine_clock_is_clamped_per_alert(kit):
    """d2 pushes the clock to 20, so d1's keep_firing_for resolves at 11; d1's next reading
    (ts 5, newer than d1's last seen) re-opens — stamped 11, never before the resolve."""
    eng = kit.engine([thr(keep_firing_for=10, target={})])
    out = kit.run(eng, [(0, "d1", {"temp": 90}), (1, "d1", {"temp": 50}), (20, "d2", {"temp": 1}), (5, "d1", {"temp": 90})])
    assert kit.brief(out) == [
        (0, "d1", "inactive", "firing"),
        (11, "d1", "firing", "resolved"),
        (11, "d1", "inactive", "firing"),
    ]


def test_readings_without_the_metric_do_not_evaluate(kit):
    eng = kit.engine([thr(flapping={"window": 2, "threshold": 0.4})])
    out = kit.run(eng, [(0, "d1", {"temp": 90}), (1, "d1", {"other": 1}), (2, "d1", {"other": 1}), (3, "d1", {"temp": float("nan")})])
    assert kit.brief(out) == [(0, "d1", "inactive", "firing")]
    assert eng.alert(FP).count == 1


def test_naive_timestamps_are_rejected(kit):
    from datetime import datetime

    eng = kit.engine([thr()])
    with pytest.raises(ValueError, match="timezone-aware"):
        eng.advance(datetime(2026, 1, 1))


def test_resolve_after_clears_by_time_when_no_breaching_data_arrives(kit):
    eng = kit.engine([thr(resolve_after="30s")])
    out = kit.run(eng, [(0, "d1", {"temp": 90}), (20, "d1", {"temp": 95}), (40, "d1", {"other": 1}), (45, "advance")])
    assert kit.brief(out) == [(0, "d1", "inactive", "firing")]  # the breach at 20 pushed it to 50
    out = eng.advance(kit.at(100))
    assert kit.brief(out) == [(50, "d1", "firing", "resolved")]
    assert "resolve_after" in out[0].reason and out[0].notify
    # data that breaches again opens a new alert
    assert kit.brief(kit.run(eng, [(101, "d1", {"temp": 99})])) == [(101, "d1", "inactive", "firing")]
