"""Composite (all/any/not, rule references), anomaly and fleet rules."""

from __future__ import annotations

import pytest

from alerting.engine import AlertState, Fingerprint

HOT = {"kind": "threshold", "metric": "temp", "op": ">", "value": 80}
WET = {"kind": "threshold", "metric": "hum", "op": ">=", "value": 90}


def comp(mode, *conds, **extra):
    r = {"kind": "composite", "id": "c", "mode": mode, "conditions": list(conds), "target": {"devices": ["d1"]}}
    r.update(extra)
    return r


# readings on d1; metrics missing from a reading keep their last value
STEPS = [
    (1, {"temp": 90}),  # hot, hum unknown
    (2, {"hum": 95}),  # hot + wet
    (3, {"temp": 50}),  # wet only
    (4, {"hum": 10}),  # neither
    (5, {"temp": 99, "hum": 99}),  # both
]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # all: unknown hum at t=1 means no evaluation (not a breach, not a clear)
        (comp("all", HOT, WET), [(2, "inactive", "firing"), (3, "firing", "resolved"), (5, "inactive", "firing")]),
        (comp("any", HOT, WET), [(1, "inactive", "firing"), (4, "firing", "resolved"), (5, "inactive", "firing")]),
        (comp("not", HOT), [(3, "inactive", "firing"), (5, "firing", "resolved")]),
        # nesting, hot and not wet: never both in this sequence
        (comp("all", HOT, {"kind": "composite", "mode": "not", "conditions": [WET]}), []),
    ],
)
def test_composite_modes(kit, rule, expected):
    eng = kit.engine([rule])
    out = kit.run(eng, [(s, "d1", m) for s, m in STEPS])
    assert [(s, f, to) for s, _, f, to in kit.brief(out)] == expected


def test_composite_hot_and_not_wet(kit):
    rule = comp("all", HOT, {"kind": "composite", "mode": "not", "conditions": [WET]})
    eng = kit.engine([rule])
    out = kit.run(eng, [(1, "d1", {"hum": 10}), (2, "d1", {"temp": 90}), (3, "d1", {"hum": 95}), (4, "d1", {"hum": 1})])
    assert [(s, to) for s, _, _, to in kit.brief(out)] == [(2, "firing"), (3, "resolved"), (4, "firing")]


def test_composite_references_other_rules_and_keeps_their_hysteresis(kit):
    rules = [
        {"kind": "threshold", "id": "hot", "metric": "temp", "op": ">", "value": 80, "clear": 70, "target": {"devices": ["x"]}},
        comp("all", {"kind": "rule", "rule": "hot"}, WET),
    ]
    eng = kit.engine(rules)
    out = kit.run(eng, [(1, "d1", {"temp": 85, "hum": 95}), (2, "d1", {"temp": 75}), (3, "d1", {"temp": 70})])
    # 75 is above the clear level of the referenced rule: still breaching
    assert [(s, f, to) for s, _, f, to in kit.brief(out)] == [(1, "inactive", "firing"), (3, "firing", "resolved")]


def test_composite_with_absence_is_evaluated_by_timer(kit):
    # "temperature high and no humidity report for 10 s"
    rule = comp("all", HOT, {"kind": "absence", "metric": "hum", "duration": 10})
    eng = kit.engine([rule])
    out = kit.run(eng, [(0, "d1", {"temp": 90, "hum": 1}), (5, "d1", {"temp": 91}), (30, "advance")])
    assert kit.brief(out) == [(10, "d1", "inactive", "firing")]


@pytest.mark.parametrize(
    ("threshold", "scores", "expected"),
    [
        (0.8, [0.5, 0.8, 0.79], [(2, "inactive", "firing"), (3, "firing", "resolved")]),
        (0.9, [0.5, 0.8, 0.89], []),
    ],
)
def test_anomaly_rule_uses_the_score_metric(kit, threshold, scores, expected):
    rule = {"kind": "anomaly", "id": "anom", "metric": "temp", "threshold": threshold, "detector": "zscore"}
    eng = kit.engine([rule])
    out = kit.run(eng, [(i + 1, "d1", {"anomaly_score.temp": s, "temp": 1000}) for i, s in enumerate(scores)])
    assert [(s, f, to) for s, _, f, to in kit.brief(out)] == expected


def fleet(percent=50, **extra):
    r = {"kind": "fleet", "id": "fl", "percent": percent, "condition": HOT, "severity": "critical"}
    r.update(extra)
    return r


def test_fleet_parent_alert_lists_its_children(kit):
    eng = kit.engine([fleet(50)])
    out = kit.run(
        eng,
        [
            (1, "d1", {"temp": 90}),  # 1/4 = 25 %
            (2, "d2", {"temp": 90}),  # 2/4 = 50 % → fire
            (3, "d3", {"temp": 95}),  # 3/4: still the same alert, children updated
            (4, "d1", {"temp": 10}),  # 2/4: still firing
            (5, "d2", {"temp": 10}),  # 1/4: resolved
        ],
    )
    assert kit.brief(out) == [(2, "group:tenant", "inactive", "firing"), (5, "group:tenant", "firing", "resolved")]
    fire, res = out
    assert fire.children == ("d1", "d2") and fire.value == 50 and fire.device_id is None and fire.group == "tenant"
    assert fire.fingerprint == Fingerprint("t", "fl", "group:tenant") and fire.severity == "critical"
    assert res.children == ("d3",)
    assert not any(t.device_id for t in out)  # no per-device alerts for fleet rules


def test_fleet_alert_children_visible_on_the_open_alert_and_ack_works(kit):
    eng = kit.engine([fleet(50)])
    kit.run(eng, [(1, "d1", {"temp": 90}), (2, "d2", {"temp": 90}), (3, "d3", {"temp": 95})])
    (a,) = eng.alerts()
    assert a.children == ("d1", "d2", "d3") and a.value == 75
    out = eng.acknowledge("t/fl/group:tenant", kit.at(4))
    assert [t.to_state for t in out] == [AlertState.ACKNOWLEDGED]


def test_fleet_group_by_site_and_min_devices(kit):
    eng = kit.engine([fleet(100, group_by="site", min_devices=2)])
    out = kit.run(eng, [(1, "d1", {"temp": 90}), (2, "d3", {"temp": 90}), (3, "d4", {"temp": 90}), (4, "d2", {"temp": 90})])
    assert kit.brief(out) == [(3, "group:site:s2", "inactive", "firing"), (4, "group:site:s1", "inactive", "firing")]
    assert out[0].labels["site_id"] == "s2"


def test_fleet_of_absence_children_fires_on_timer(kit):
    rule = fleet(50, condition={"kind": "absence", "duration": 60}, **{"for": 30})
    eng = kit.engine([rule])
    out = kit.run(eng, [(50, "d1", {"x": 1}), (50, "d2", {"x": 1}), (100, "d1", {"x": 1}), (150, "advance")])
    # d3 and d4 never reported: absent at 60 → 50 % → pending, firing at 90
    assert kit.brief(out) == [(60, "group:tenant", "inactive", "pending"), (90, "group:tenant", "pending", "firing")]
    assert out[-1].children == ("d3", "d4")
    (a,) = eng.alerts()
    assert a.children == ("d2", "d3", "d4")  # d2 silent since 50 → absent at 110; d1 reported at 100


def test_fleet_edit_keeps_the_parent_alert_and_removal_resolves_it(kit):
    eng = kit.engine([fleet(50)])
    kit.run(eng, [(1, "d1", {"temp": 90}), (2, "d2", {"temp": 90})])
    (before,) = eng.alerts()
    assert eng.update_rules([fleet(25, severity="warning")]) == []
    (after,) = eng.alerts()
    assert after.alert_id == before.alert_id and after.children == ("d1", "d2") and after.severity == "warning"
    # the new percentage applies from the next evaluation: 1/4 = 25 % still breaches
    assert kit.run(eng, [(3, "d1", {"temp": 10})]) == []
    out = eng.update_rules([])
    assert kit.brief(out) == [(3, "group:tenant", "firing", "resolved")]


def test_fingerprint_string_round_trip_and_alert_lookup(kit):
    fp = Fingerprint("acme", "r-1", "group:site:s/1")
    assert Fingerprint.parse(str(fp)) == fp
    eng = kit.engine([fleet(50)])
    kit.run(eng, [(1, "d1", {"temp": 90}), (2, "d2", {"temp": 90})])
    assert eng.alert("t/fl/group:tenant").children == ("d1", "d2")
    assert eng.alert(Fingerprint("t", "fl", "d1")) is None  # members own no alert
