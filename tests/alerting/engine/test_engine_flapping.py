"""Flapping: exactly one transition entering, one leaving, silence in between."""

from __future__ import annotations

import pytest

from alerting.engine import AlertState, Fingerprint


def rule(window=4, threshold=0.5, **extra):
    r = {
        "kind": "threshold", "id": "hot", "metric": "temp", "op": ">", "value": 80,
        "flapping": {"window": window, "threshold": threshold}, "target": {"devices": ["d1"]},
    }
    r.update(extra)
    return r


H, L = 90, 10


@pytest.mark.parametrize(
    ("r", "values", "expected"),
    [
        # enters at the 4th evaluation (4/4 flips > 0.5), leaves to firing once the share
        # is down to the clear level (default threshold/2 = 0.25 → 1 flip in 4)
        (
            rule(),
            [H, L, H, L, H, L, H, H, H, H, H],
            [(1, "inactive", "firing"), (2, "firing", "resolved"), (3, "inactive", "firing"), (4, "firing", "flapping"), (10, "flapping", "firing")],
        ),
        # leaves to resolved when the condition is clear by then
        (
            rule(),
            [H, L, H, L, H, L, L, L, L, L],
            [(1, "inactive", "firing"), (2, "firing", "resolved"), (3, "inactive", "firing"), (4, "firing", "flapping"), (9, "flapping", "resolved")],
        ),
        # no open alert but breaching when the share crosses: opens directly in flapping
        (
            rule(window=5),
            [H, L, H, L, H, H, H, H, H],
            [(1, "inactive", "firing"), (2, "firing", "resolved"), (3, "inactive", "firing"), (4, "firing", "resolved"), (5, "inactive", "flapping"), (9, "flapping", "firing")],
        ),
        # pending alerts flap too (for never elapses between flips)
        (
            rule(**{"for": 100}),
            [H, L, H, L, L, L, L],
            [(1, "inactive", "pending"), (2, "pending", "resolved"), (3, "inactive", "pending"), (4, "pending", "flapping"), (7, "flapping", "resolved")],
        ),
        # explicit clear_threshold 0: must be perfectly stable for a whole window to leave
        (
            {**rule(), "flapping": {"window": 4, "threshold": 0.5, "clear_threshold": 0}},
            [H, L, H, L, H, H, H, H, H],
            [(1, "inactive", "firing"), (2, "firing", "resolved"), (3, "inactive", "firing"), (4, "firing", "flapping"), (9, "flapping", "firing")],
        ),
    ],
)
def test_flapping_enter_and_leave_exactly_once(kit, r, values, expected):
    eng = kit.engine([r])
    out = kit.run(eng, [(i + 1, "d1", {"temp": v}) for i, v in enumerate(values)])
    assert [(s, f, to) for s, _, f, to in kit.brief(out)] == expected
    enters = [t for t in out if t.to_state is AlertState.FLAPPING]
    leaves = [t for t in out if t.from_state is AlertState.FLAPPING]
    assert len(enters) == 1 and len(leaves) == 1
    assert enters[0].notify and leaves[0].notify and enters[0].alert_id == leaves[0].alert_id


def test_share_exactly_at_threshold_is_not_flapping(kit):
    # flips: 1,0,1,0 → 2 of 4 = 0.5, not above 0.5
    eng = kit.engine([rule()])
    out = kit.run(eng, [(i + 1, "d1", {"temp": v}) for i, v in enumerate([H, H, L, L, H, H])])
    assert [(s, f, to) for s, _, f, to in kit.brief(out)] == [
        (1, "inactive", "firing"), (3, "firing", "resolved"), (5, "inactive", "firing"),
    ]


def test_ack_while_flapping_is_recorded_and_survives_leaving(kit):
    eng = kit.engine([rule()])
    kit.run(eng, [(i + 1, "d1", {"temp": v}) for i, v in enumerate([H, L, H, L, H])])
    fp = Fingerprint("t", "hot", "d1")
    out = eng.acknowledge(fp, kit.at(5.5))
    assert [(t.from_state, t.to_state, t.reason) for t in out] == [
        (AlertState.FLAPPING, AlertState.FLAPPING, "acknowledged while flapping")
    ]
    assert eng.acknowledge(fp, kit.at(5.6)) == []
    out = kit.run(eng, [(6 + i, "d1", {"temp": H}) for i in range(5)])
    assert [(t.from_state, t.to_state) for t in out] == [(AlertState.FLAPPING, AlertState.ACKNOWLEDGED)]


def test_flapping_alert_keeps_counting_repeats(kit):
    eng = kit.engine([rule()])
    kit.run(eng, [(i + 1, "d1", {"temp": v}) for i, v in enumerate([H, L, H, L, H, L, H])])
    (a,) = eng.alerts()
    assert a.state is AlertState.FLAPPING
    assert a.count == 3  # breaching evaluations at 3, 5, 7 of the alert opened at 3
    assert a.alert_id.endswith("#2")


def test_disabling_flapping_detection_leaves_flapping_with_one_transition(kit):
    eng = kit.engine([rule()])
    kit.run(eng, [(i + 1, "d1", {"temp": v}) for i, v in enumerate([H, L, H, L, H])])
    assert eng.alerts()[0].state is AlertState.FLAPPING
    out = eng.update_rules([{**rule(), "flapping": None}])
    assert kit.brief(out) == [(5, "d1", "flapping", "firing")]
    assert out[0].reason == "flapping detection disabled, condition holds"
    # from now on a plain alert: the next clear resolves it
    assert kit.brief(kit.run(eng, [(6, "d1", {"temp": L})])) == [(6, "d1", "firing", "resolved")]
