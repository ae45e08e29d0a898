"""update_rules keeps the state of alerts a rule still matches; snapshot/restore round trip."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from alerting.engine import AlertState, DeviceInfo, Engine, Fingerprint

FP = Fingerprint("t", "hot", "d1")


def hot(**extra):
    r = {"kind": "threshold", "id": "hot", "metric": "temp", "op": ">", "value": 80, "clear": 70, "target": {"devices": ["d1"]}}
    r.update(extra)
    return r


def test_editing_a_rule_keeps_its_alert(kit):
    eng = kit.engine([hot()])
    kit.run(eng, [(0, "d1", {"temp": 90}), (1, "d1", {"temp": 91})])
    before = eng.alert(FP)
    assert eng.update_rules([hot(severity="critical", labels={"team": "a"})]) == []
    after = eng.alert(FP)
    assert after.alert_id == before.alert_id and after.count == 2 and after.state is AlertState.FIRING
    assert after.severity == "critical" and after.labels["team"] == "a"
    # hysteresis state survives an edit that keeps the condition: 75 is above clear 70
    assert kit.run(eng, [(2, "d1", {"temp": 75})]) == []
    out = kit.run(eng, [(3, "d1", {"temp": 70})])
    assert [(t.to_state, t.severity) for t in out] == [(AlertState.RESOLVED, "critical")]


def test_changing_the_condition_resets_hysteresis_but_keeps_the_alert(kit):
    eng = kit.engine([hot()])
    kit.run(eng, [(0, "d1", {"temp": 90})])
    eng.update_rules([hot(clear=72)])
    assert eng.alert(FP).state is AlertState.FIRING
    # re-evaluated from scratch against the fire level: 75 is not > 80 → clears
    out = kit.run(eng, [(1, "d1", {"temp": 75})])
    assert kit.brief(out) == [(1, "d1", "firing", "resolved")]


def test_shortening_for_fires_a_pending_alert_at_the_new_deadline(kit):
    eng = kit.engine([hot(**{"for": 60})])
    kit.run(eng, [(0, "d1", {"temp": 90}), (5, "advance")])
    assert eng.next_deadline() == kit.at(60)
    eng.update_rules([hot(**{"for": 10})])
    assert eng.next_deadline() == kit.at(10)
    assert kit.brief(eng.advance(kit.at(30))) == [(10, "d1", "pending", "firing")]


@pytest.mark.parametrize(
    ("new_rules", "reason"),
    [
        ([], "rule removed"),
        ([hot(target={"devices": ["d2"]})], "device no longer targeted by the rule"),
    ],
)
def test_removed_rules_and_untargeted_devices_resolve(kit, new_rules, reason):
    eng = kit.engine([hot()])
    kit.run(eng, [(0, "d1", {"temp": 90}), (7, "advance")])
    out = eng.update_rules(new_rules)
    assert kit.brief(out) == [(7, "d1", "firing", "resolved")]
    assert out[0].reason == reason and out[0].notify
    assert eng.alerts() == []


def test_invalid_update_raises_and_leaves_the_engine_untouched(kit):
    eng = kit.engine([hot()])
    kit.run(eng, [(0, "d1", {"temp": 90})])
    with pytest.raises(ValidationError):
        eng.update_rules([hot(op="=>")])
    assert eng.alert(FP).state is AlertState.FIRING
    assert [r.id for r in eng.rules] == ["hot"]


def _busy_engine(kit):
    rules = [
        hot(**{"for": 5}, keep_firing_for=20, flapping={"window": 6, "threshold": 0.6}),
        {"kind": "absence", "id": "quiet", "duration": 30, "target": {"devices": ["d2", "d3"]}},
        {"kind": "window", "id": "avg", "metric": "temp", "agg": "avg", "window": "1m", "op": ">", "value": 50},
        {"kind": "fleet", "id": "fl", "percent": 50, "condition": {"kind": "threshold", "metric": "temp", "op": ">", "value": 60}},
    ]
    eng = kit.engine(rules)
    steps = [
        (0, "d1", {"temp": 90}), (1, "d2", {"temp": 70}), (6, "d1", {"temp": 95}), (8, "d1", {"temp": 40}),
        (9, "d3", {"temp": 10}), (12, "advance"),
    ]
    kit.run(eng, steps)
    return rules, eng


AFTER = [(20, "d1", {"temp": 30}), (25, "d4", {"temp": 99}), (33, "d2", {"temp": 20}), (200, "advance"), (210, "d3", {"temp": 1})]


@pytest.mark.parametrize("include_windows", [True, False])
def test_snapshot_restore_round_trip(kit, include_windows):
    rules, eng = _busy_engine(kit)
    snap = json.loads(json.dumps(eng.snapshot(include_windows=include_windows)))
    restored = Engine.restore(snap, rules, kit.DEVICES)
    assert restored.restore_transitions == []
    assert restored.alerts() == eng.alerts()
    assert restored.next_deadline() == eng.next_deadline() == kit.at(28)  # keep_firing_for of d1
    assert restored.clock == eng.clock
    if not include_windows:
        restored.rebuild_windows(
            [kit.reading(0, "d1", temp=90), kit.reading(6, "d1", temp=95), kit.reading(8, "d1", temp=40),
             kit.reading(1, "d2", temp=70), kit.reading(9, "d3", temp=10)]
        )
    expected = kit.run(eng, AFTER)
    assert kit.run(restored, AFTER) == expected
    assert any(t.rule_id == "avg" for t in expected)  # the window rule did take part
    assert restored.snapshot() == eng.snapshot()


def test_restore_with_a_removed_rule_resolves_its_alerts(kit):
    rules, eng = _busy_engine(kit)
    open_avg = [a.alert_id for a in eng.alerts() if a.rule_id == "avg"]
    # ids: fingerprint @ opening time (µs since epoch) # n-th alert of the fingerprint
    opened = kit.to_us(kit.at(0)), kit.to_us(kit.at(1))
    assert open_avg == [f"t/avg/d1@{opened[0]}#1", f"t/avg/d2@{opened[1]}#1"]
    restored = Engine.restore(eng.snapshot(), [r for r in rules if r["id"] != "avg"], kit.DEVICES)
    assert [(t.alert_id, t.to_state, t.reason, t.at) for t in restored.restore_transitions] == [
        (aid, AlertState.RESOLVED, "rule removed", kit.at(12)) for aid in open_avg
    ]
    assert [str(a.fingerprint) for a in restored.alerts()] == ["t/hot/d1"]


def test_restore_rejects_unknown_snapshot_version():
    with pytest.raises(ValueError, match="snapshot version"):
        Engine.restore({"version": 99}, [], [DeviceInfo("t", "d")])


def test_rebuild_windows_does_not_double_count(kit):
    rules, eng = _busy_engine(kit)
    restored = Engine.restore(eng.snapshot(include_windows=True), rules, kit.DEVICES)
    # feeding the same history again (and a point newer than last seen) changes nothing
    restored.rebuild_windows([kit.reading(0, "d1", temp=90), kit.reading(6, "d1", temp=95), kit.reading(99, "d1", temp=1)])
    assert restored.snapshot() == eng.snapshot()
