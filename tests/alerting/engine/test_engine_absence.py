"""Absence rules: timer-driven, fire with no messages at all, clear when data returns."""

from __future__ import annotations

from alerting.engine import AlertState, DeviceInfo, Fingerprint


def absence(metric=None, duration="30s", **extra):
    r = {"kind": "absence", "id": "quiet", "duration": duration, "target": {"devices": ["d1"]}}
    if metric:
        r["metric"] = metric
    r.update(extra)
    return r


def test_fires_on_advance_with_no_messages_and_clears_when_data_returns(kit):
    eng = kit.engine([absence()])
    assert eng.next_deadline() == kit.at(30)  # a never-seen device counts from clock_start
    assert eng.advance(kit.at(29.999)) == []
    out = eng.advance(kit.at(500))
    assert kit.brief(out) == [(30, "d1", "inactive", "firing")]
    assert out[0].value == 30 and out[0].notify
    assert eng.next_deadline() is None  # nothing left to wait for: only data can clear it
    out = kit.run(eng, [(600, "d1", {"x": 1})])
    assert kit.brief(out) == [(600, "d1", "firing", "resolved")]
    assert eng.next_deadline() == kit.at(630)


def test_each_reading_pushes_the_deadline(kit):
    eng = kit.engine([absence()])
    out = kit.run(eng, [(10, "d1", {"x": 1}), (35, "d1", {"x": 1}), (64, "advance"), (65, "advance")])
    assert kit.brief(out) == [(65, "d1", "inactive", "firing")]


def test_metric_absence_ignores_other_metrics(kit):
    eng = kit.engine([absence(metric="temp")])
    out = kit.run(eng, [(0, "d1", {"temp": 1}), (20, "d1", {"hum": 1}), (40, "d1", {"hum": 1})])
    assert kit.brief(out) == [(30, "d1", "inactive", "firing")]
    out = kit.run(eng, [(50, "d1", {"temp": 2})])
    assert kit.brief(out) == [(50, "d1", "firing", "resolved")]


def test_absence_with_for_and_keep_firing_for(kit):
    eng = kit.engine([absence(duration=10, **{"for": 5, "keep_firing_for": 20})])
    out = kit.run(eng, [(0, "d1", {"x": 1}), (100, "advance"), (101, "d1", {"x": 1}), (200, "advance")])
    assert kit.brief(out) == [
        (10, "d1", "inactive", "pending"),
        (15, "d1", "pending", "firing"),
        # data back at 101; keep_firing_for 20 → resolved at 121 unless it goes quiet again;
        # it does go quiet at 111, which re-breaches and cancels the resolve
    ]
    (a,) = eng.alerts()
    assert a.state is AlertState.FIRING and a.count == 2


def test_absence_keep_firing_for_resolves_when_data_keeps_coming(kit):
    eng = kit.engine([absence(duration=10, keep_firing_for=20)])
    steps = [(0, "d1", {"x": 1}), (30, "advance")] + [(31 + 5 * i, "d1", {"x": 1}) for i in range(10)]
    out = kit.run(eng, steps)
    assert kit.brief(out) == [(10, "d1", "inactive", "firing"), (51, "d1", "firing", "resolved")]


def test_manual_resolve_rearms_the_absence_timer(kit):
    eng = kit.engine([absence()])
    out = kit.run(eng, [(40, "advance"), (45, "resolve", Fingerprint("t", "quiet", "d1")), (200, "advance")])
    assert kit.brief(out) == [
        (30, "d1", "inactive", "firing"),
        (45, "d1", "firing", "resolved"),
        (75, "d1", "inactive", "firing"),  # still silent 30 s after the operator's resolve
    ]


def test_without_clock_start_devices_are_watched_from_the_first_event(kit):
    eng = kit.engine([absence()], clock_start=None)
    assert eng.next_deadline() is None and eng.clock is None
    out = kit.run(eng, [(100, "d2", {"x": 1}), (129, "advance"), (131, "advance")])
    assert kit.brief(out) == [(130, "d1", "inactive", "firing")]


def test_unknown_device_is_watched_once_seen(kit):
    eng = kit.engine([absence(target={})], devices=[])
    out = kit.run(eng, [(5, "zz", {"x": 1}), (100, "advance")])
    assert kit.brief(out) == [(35, "zz", "inactive", "firing")]


def test_devices_added_later_count_from_when_they_were_added(kit):
    eng = kit.engine([absence(target={})], devices=[DeviceInfo("t", "a")])
    kit.run(eng, [(20, "a", {"x": 1})])
    assert eng.update_devices([DeviceInfo("t", "a"), DeviceInfo("t", "b")]) == []
    out = eng.advance(kit.at(60))
    assert kit.brief(out) == [(50, "a", "inactive", "firing"), (50, "b", "inactive", "firing")]
    out = eng.update_devices([DeviceInfo("t", "a")])
    assert kit.brief(out) == [(60, "b", "firing", "resolved")]
    assert "device no longer targeted" in out[0].reason
