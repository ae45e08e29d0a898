"""Streaming anomaly rules: the engine runs a registry detector per device (``update(t, value)``)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from alerting.engine import Engine
from alerting.rules import load_rules


def _series(n=500, spike_at=450, seed=1):
    rng = np.random.default_rng(seed)
    vals = 20 + np.sin(np.arange(n) / 15) + rng.normal(0, 0.1, n)
    if spike_at is not None:
        vals[spike_at] = 60.0
    return vals


def _rule(**extra):
    r = {"kind": "anomaly", "id": "stream", "metric": "temp", "threshold": 0.5, "streaming": True,
         "detector": "robust_z", "warmup": 200}
    r.update(extra)
    return r


def test_streaming_rule_fires_on_a_planted_spike_and_resolves(kit):
    eng = kit.engine([_rule()])
    out = kit.run(eng, [(i, "d1", {"temp": float(v)}) for i, v in enumerate(_series())])
    assert kit.brief(out)[0] == (450.0, "d1", "inactive", "firing")
    assert kit.brief(out)[1][2:] == ("firing", "resolved")
    assert all(s[0] >= 450 for s in kit.brief(out))
    assert 0.5 <= out[0].value <= 1.0 and "~stream:temp" in out[0].reason


def test_state_is_per_device_and_warmup_is_undecided(kit):
    eng = kit.engine([_rule()])
    steps = []
    for i, v in enumerate(_series(spike_at=None)):
        steps.append((i, "d1", {"temp": float(v)}))
        if i < 150:  # d2 never finishes warming up: even a huge value cannot fire
            steps.append((i, "d2", {"temp": 1000.0 if i == 149 else float(v)}))
    steps.append((500, "d1", {"temp": 60.0}))
    out = kit.run(eng, steps)
    assert kit.brief(out) == [(500.0, "d1", "inactive", "firing")]


def test_same_result_as_the_detector_run_offline(kit):
    """The engine's score is exactly the detector's own causal score of the stream."""
    from detectors import registry

    vals = _series()
    eng = kit.engine([_rule(threshold=1.0)])
    kit.run(eng, [(i, "d1", {"temp": float(v)}) for i, v in enumerate(vals)])
    det = registry.create("robust_z").fit(vals[:200])
    expected = det.score(vals[200:])[-1]
    (key,) = [k for k in eng.snapshot()["devices"][0]["last_values"] if k.startswith("~stream")]
    assert eng.snapshot()["devices"][0]["last_values"][key][1] == pytest.approx(expected)


def test_streaming_inside_a_composite_and_snapshot_restore(kit):
    comp = {"kind": "composite", "id": "c", "mode": "all", "conditions": [
        {"kind": "anomaly", "metric": "temp", "threshold": 0.5, "streaming": True, "detector": "robust_z",
         "warmup": 200},
        {"kind": "threshold", "metric": "temp", "op": ">", "value": 30}]}
    eng = kit.engine([comp])
    out = kit.run(eng, [(i, "d1", {"temp": float(v)}) for i, v in enumerate(_series())])
    assert kit.brief(out)[0] == (450.0, "d1", "inactive", "firing")
    # a snapshot is JSON; after a restore the detector warms up again (no crash, no refire)
    snap = eng.snapshot()
    eng2 = Engine.restore(snap, [comp], kit.DEVICES)
    more = kit.run(eng2, [(600 + i, "d1", {"temp": 20.0}) for i in range(5)])
    assert all(t.to_state.value == "resolved" for t in more)


@pytest.mark.parametrize(("rule", "message"), [
    (_rule(detector="nope"), "unknown detector 'nope'"),
    (_rule(params={"window": -1}), "invalid parameters for robust_z"),
    ({"kind": "anomaly", "id": "a", "metric": "m", "params": {"window": 5}}, "params only apply to a streaming"),
    (_rule(score_metric="x"), "score_metric does not apply"),
    (_rule(warmup=1), "warmup"),
])
def test_invalid_streaming_rules_are_clear_errors(rule, message):
    with pytest.raises(ValidationError) as exc:
        load_rules([rule])
    assert message in str(exc.value)


def test_default_detector_is_used_without_a_name(kit):
    eng = kit.engine([_rule(detector=None, threshold=1.0)])
    out = kit.run(eng, [(i, "d1", {"temp": float(v)}) for i, v in enumerate(_series())])
    assert out == [] or all(t.rule_id == "stream" for t in out)
    assert any(k.startswith('~stream:temp:["default"') for k in eng.snapshot()["devices"][0]["last_values"])
