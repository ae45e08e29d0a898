"""Table-driven cases for on-call layers, restrictions, overrides and config validation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from alerting.oncall import OVERRIDE, Schedule, parse_duration, shifts, who_is_on_call

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def sched(layers: list[dict[str, Any]], overrides: list[dict[str, Any]] | None = None, tz: str = "Europe/Berlin") -> Schedule:
    return Schedule.model_validate(
        {"id": "ops", "name": "Ops", "time_zone": tz, "layers": layers, "overrides": overrides or []}
    )


def local(tz: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz), fold=fold)


DAILY = {"name": "base", "users": ["ann", "bob"], "rotation": "1d", "start": "2025-01-06T09:00"}
WEEKDAY_DAYTIME = {
    "name": "day",
    "users": ["cy"],
    "rotation": "7d",
    "start": "2025-01-06T00:00",
    "restrictions": {"weekdays": ["mon", "tue", "wed", "thu", "fri"], "time_ranges": [{"start": "09:00", "end": "17:00"}]},
}

# (id, layers, overrides, local instant (Berlin), expected user, expected source)
CASES = [
    ("first-turn", [DAILY], [], (2025, 1, 6, 9, 0), "ann", "base"),
    ("just-before-handoff", [DAILY], [], (2025, 1, 7, 8, 59), "ann", "base"),
    ("at-handoff", [DAILY], [], (2025, 1, 7, 9, 0), "bob", "base"),
    ("wraps-around", [DAILY], [], (2025, 1, 8, 10, 0), "ann", "base"),
    ("before-anchor-rotates-backwards", [DAILY], [], (2025, 1, 5, 10, 0), "bob", "base"),
    ("higher-layer-wins", [DAILY, {**DAILY, "name": "top", "users": ["zed"]}], [], (2025, 1, 7, 12, 0), "zed", "top"),
    ("restricted-layer-wins-inside-window", [DAILY, WEEKDAY_DAYTIME], [], (2025, 1, 7, 12, 0), "cy", "day"),
    ("restriction-gap-filled-by-lower-evening", [DAILY, WEEKDAY_DAYTIME], [], (2025, 1, 7, 17, 0), "bob", "base"),
    ("restriction-gap-filled-by-lower-weekend", [DAILY, WEEKDAY_DAYTIME], [], (2025, 1, 11, 12, 0), "bob", "base"),
    ("restriction-gap-without-lower-layer", [WEEKDAY_DAYTIME], [], (2025, 1, 11, 12, 0), None, None),
    ("lower-restricted-layer-shows-through", [WEEKDAY_DAYTIME, {**WEEKDAY_DAYTIME, "name": "night", "users": ["nia"],
        "restrictions": {"time_ranges": [{"start": "20:00", "end": "08:00"}]}}], [], (2025, 1, 7, 12, 0), "cy", "day"),
    ("override-beats-top-layer", [DAILY, WEEKDAY_DAYTIME], [{"user": "ovi", "start": "2025-01-07T11:00", "end": "2025-01-07T13:00"}],
        (2025, 1, 7, 12, 0), "ovi", OVERRIDE),
    ("override-end-is-exclusive", [DAILY], [{"user": "ovi", "start": "2025-01-07T11:00", "end": "2025-01-07T13:00"}],
        (2025, 1, 7, 13, 0), "bob", "base"),
    ("later-override-wins", [DAILY], [{"user": "o1", "start": "2025-01-07T10:00", "end": "2025-01-07T14:00"},
        {"user": "o2", "start": "2025-01-07T12:00", "end": "2025-01-07T13:00"}], (2025, 1, 7, 12, 30), "o2", OVERRIDE),
    ("earlier-override-outside-later", [DAILY], [{"user": "o1", "start": "2025-01-07T10:00", "end": "2025-01-07T14:00"},
        {"user": "o2", "start": "2025-01-07T12:00", "end": "2025-01-07T13:00"}], (2025, 1, 7, 13, 30), "o1", OVERRIDE),
    ("override-with-offset", [DAILY], [{"user": "o1", "start": "2025-01-07T10:00:00Z", "end": "2025-01-07T11:00:00Z"}],
        (2025, 1, 7, 11, 30), "o1", OVERRIDE),
    ("overnight-range-friday-night-reaches-saturday", [DAILY, {**WEEKDAY_DAYTIME, "restrictions": {"weekdays": ["fri"],
        "time_ranges": [{"start": "22:00", "end": "06:00"}]}}], [], (2025, 1, 11, 3, 0), "cy", "day"),
    ("overnight-range-not-from-thursday", [DAILY, {**WEEKDAY_DAYTIME, "restrictions": {"weekdays": ["fri"],
        "time_ranges": [{"start": "22:00", "end": "06:00"}]}}], [], (2025, 1, 10, 3, 0), "bob", "base"),
    ("end-24-00-runs-to-midnight", [{**WEEKDAY_DAYTIME, "restrictions": {"time_ranges": [{"start": "18:00", "end": "24:00"}]}}],
        [], (2025, 1, 7, 23, 59), "cy", "day"),
    ("weekdays-only-whole-day", [{**WEEKDAY_DAYTIME, "restrictions": {"weekdays": ["sat"]}}], [], (2025, 1, 11, 0, 0), "cy", "day"),
    ("weekdays-only-excluded-day", [{**WEEKDAY_DAYTIME, "restrictions": {"weekdays": ["sat"]}}], [], (2025, 1, 12, 0, 0), None, None),
    ("time-only-start-weekly-monday", [{"name": "w", "users": ["a", "b"], "rotation": "7d", "start": "09:00"}], [],
        (2025, 1, 6, 8, 59), "a", "w"),  # 2000-01-03 .. 2025-01-06 is 1305 weeks: odd turn starts at 09:00
    ("time-only-start-weekly-monday-handoff", [{"name": "w", "users": ["a", "b"], "rotation": "7d", "start": "09:00"}], [],
        (2025, 1, 6, 9, 0), "b", "w"),
    ("integer-rotation-is-hours", [{"name": "h", "users": ["a", "b", "c"], "rotation": 8, "start": "2025-01-06T00:00"}], [],
        (2025, 1, 6, 17, 0), "c", "h"),
    ("aware-start-converted-to-zone", [{"name": "u", "users": ["a", "b"], "rotation": "1d", "start": "2025-01-06T08:00:00Z"}], [],
        (2025, 1, 7, 8, 59), "a", "u"),
]


@pytest.mark.parametrize(("layers", "overrides", "when", "user", "source"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_who_is_on_call_cases(layers, overrides, when, user, source) -> None:
    schedule = sched(layers, overrides)
    t = datetime(*when, tzinfo=BERLIN)
    got = who_is_on_call(schedule, t)
    assert (got.user, got.layer) == (user, source)
    if got.start is not None and got.end is not None:
        assert got.start <= t < got.end
    # The timeline agrees with the point query.
    around = shifts(schedule, t - timedelta(days=2), t + timedelta(days=2))
    covering = [s for s in around if s.start <= t < s.end]
    assert [s.user for s in covering] == ([user] if user else [])


def test_result_bounds_are_the_clipped_stretch() -> None:
    schedule = sched([DAILY, WEEKDAY_DAYTIME], [{"user": "ovi", "start": "2025-01-07T15:00", "end": "2025-01-07T16:00"}])
    assert who_is_on_call(schedule, local("Europe/Berlin", 2025, 1, 7, 12)) == _res("cy", "day", (2025, 1, 7, 9), (2025, 1, 7, 15))
    assert who_is_on_call(schedule, local("Europe/Berlin", 2025, 1, 7, 15, 30)) == _res("ovi", OVERRIDE, (2025, 1, 7, 15), (2025, 1, 7, 16))
    assert who_is_on_call(schedule, local("Europe/Berlin", 2025, 1, 7, 16)) == _res("cy", "day", (2025, 1, 7, 16), (2025, 1, 7, 17))
    # Base layer's turn (09:00-09:00) clipped by the daytime layer's windows.
    assert who_is_on_call(schedule, local("Europe/Berlin", 2025, 1, 7, 20)) == _res("bob", "base", (2025, 1, 7, 17), (2025, 1, 8, 9))
    assert who_is_on_call(schedule, local("Europe/Berlin", 2025, 1, 7, 8)) == _res("ann", "base", (2025, 1, 6, 17), (2025, 1, 7, 9))


def test_gap_result_bounds() -> None:
    schedule = sched([WEEKDAY_DAYTIME])
    got = who_is_on_call(schedule, local("Europe/Berlin", 2025, 1, 11, 12))  # Saturday
    assert got == _res(None, None, (2025, 1, 10, 17), (2025, 1, 13, 9))


def _res(user, layer, start, end):
    from alerting.oncall import OnCallResult

    return OnCallResult(user, layer, datetime(*start, tzinfo=BERLIN).astimezone(UTC), datetime(*end, tzinfo=BERLIN).astimezone(UTC))


def test_shifts_merge_adjacent_same_user_and_report_sources() -> None:
    # One user on the base layer and an override for the same user touch: one merged shift.
    schedule = sched(
        [{"name": "solo", "users": ["ann"], "rotation": "1d", "start": "2025-01-06T09:00"}],
        [{"user": "ann", "start": "2025-01-07T10:00", "end": "2025-01-07T11:00"}],
    )
    got = shifts(schedule, local("Europe/Berlin", 2025, 1, 6), local("Europe/Berlin", 2025, 1, 9))
    assert len(got) == 1
    assert (got[0].user, got[0].layer, got[0].sources) == ("ann", "solo", ("solo", OVERRIDE))
    assert got[0].start == local("Europe/Berlin", 2025, 1, 6) and got[0].end == local("Europe/Berlin", 2025, 1, 9)


def test_shifts_are_clipped_and_empty_for_empty_range() -> None:
    schedule = sched([DAILY])
    t = local("Europe/Berlin", 2025, 1, 7, 12)
    assert shifts(schedule, t, t) == []
    got = shifts(schedule, t, t + timedelta(hours=1))
    assert [(s.user, s.start, s.end) for s in got] == [("bob", t, t + timedelta(hours=1))]


# ----------------------------------------------------------------- DST, hand-computed

DST_CASES = [
    # zone, start, rotation, local instant, expected user, expected turn start (local, fold)
    ("daily-0900-berlin-spring", "Europe/Berlin", "2025-03-28T09:00", "1d", (2025, 3, 30, 8, 59), "bob", (2025, 3, 29, 9, 0)),
    ("daily-0900-berlin-spring-after", "Europe/Berlin", "2025-03-28T09:00", "1d", (2025, 3, 30, 9, 0), "ann", (2025, 3, 30, 9, 0)),
    ("daily-0900-berlin-autumn", "Europe/Berlin", "2025-10-24T09:00", "1d", (2025, 10, 26, 9, 0), "ann", (2025, 10, 26, 9, 0)),
    # 02:30 does not exist on 2025-03-30 in Berlin: the handoff moves forward to 03:30 CEST.
    ("nonexistent-handoff-shifts-forward", "Europe/Berlin", "2025-03-28T02:30", "1d", (2025, 3, 30, 3, 29), "bob", (2025, 3, 29, 2, 30)),
    ("nonexistent-handoff-after", "Europe/Berlin", "2025-03-28T02:30", "1d", (2025, 3, 30, 3, 30), "ann", (2025, 3, 30, 3, 30)),
    # 02:30 happens twice on 2025-10-26: the first occurrence (fold=0, CEST) is the handoff.
    ("ambiguous-handoff-first-occurrence", "Europe/Berlin", "2025-10-24T02:30", "1d", (2025, 10, 26, 2, 30), "ann", (2025, 10, 26, 2, 30)),
    # Santiago springs forward at midnight: 00:00 on 2025-09-07 does not exist -> 01:00.
    ("santiago-midnight-handoff", "America/Santiago", "2025-09-05T00:00", "1d", (2025, 9, 6, 23, 59), "bob", (2025, 9, 6, 0, 0)),
    ("santiago-midnight-handoff-after", "America/Santiago", "2025-09-05T00:00", "1d", (2025, 9, 7, 1, 0), "ann", (2025, 9, 7, 1, 0)),
    # 12h rotation is wall-clock: 08:00/20:00 on both sides of New York's fall-back.
    ("ny-12h-before", "America/New_York", "2025-11-01T08:00", "12h", (2025, 11, 1, 20, 0), "bob", (2025, 11, 1, 20, 0)),
    ("ny-12h-after", "America/New_York", "2025-11-01T08:00", "12h", (2025, 11, 2, 8, 0), "ann", (2025, 11, 2, 8, 0)),
    ("sydney-weekly", "Australia/Sydney", "2025-03-31T09:00", "7d", (2025, 4, 7, 9, 0), "bob", (2025, 4, 7, 9, 0)),
    ("kolkata-daily", "Asia/Kolkata", "2025-03-28T09:00", "1d", (2025, 3, 31, 8, 59), "ann", (2025, 3, 30, 9, 0)),
]


@pytest.mark.parametrize(("tz", "start", "rotation", "when", "user", "turn"), [c[1:] for c in DST_CASES], ids=[c[0] for c in DST_CASES])
def test_dst_handoffs(tz, start, rotation, when, user, turn) -> None:
    schedule = sched([{"name": "r", "users": ["ann", "bob"], "rotation": rotation, "start": start}], tz=tz)
    got = who_is_on_call(schedule, local(tz, *when))
    assert got.user == user
    assert got.start == local(tz, *turn).astimezone(UTC)


def test_ambiguous_second_occurrence_is_inside_the_turn() -> None:
    schedule = sched([{"name": "r", "users": ["ann", "bob"], "rotation": "1d", "start": "2025-10-24T02:30"}])
    second = who_is_on_call(schedule, local("Europe/Berlin", 2025, 10, 26, 2, 30, fold=1))
    assert second.user == "ann"
    assert second.start == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)  # the first 02:30 (CEST)
    assert who_is_on_call(schedule, datetime(2025, 10, 26, 0, 29, tzinfo=UTC)).user == "bob"


def test_12h_wall_clock_turn_lengths_across_fall_back() -> None:
    schedule = sched([{"name": "r", "users": ["a", "b"], "rotation": "12h", "start": "2025-10-24T08:00"}])
    got = shifts(schedule, local("Europe/Berlin", 2025, 10, 25, 8), local("Europe/Berlin", 2025, 10, 27, 8))
    lengths = [s.end - s.start for s in got]
    assert lengths == [timedelta(hours=12), timedelta(hours=13), timedelta(hours=12), timedelta(hours=12)]
    assert [s.start.astimezone(BERLIN).hour for s in got] == [8, 20, 8, 20]


def test_ambiguous_and_nonexistent_override_bounds() -> None:
    schedule = sched([DAILY], [{"user": "o", "start": "2025-10-26T02:30", "end": "2025-10-26T03:00"}])
    # 02:30 (first, CEST) = 00:30 UTC; 03:00 CET = 02:00 UTC: the override spans 90 minutes.
    assert who_is_on_call(schedule, datetime(2025, 10, 26, 0, 30, tzinfo=UTC)).user == "o"
    assert who_is_on_call(schedule, datetime(2025, 10, 26, 1, 59, tzinfo=UTC)).user == "o"
    assert who_is_on_call(schedule, datetime(2025, 10, 26, 2, 0, tzinfo=UTC)).user != "o"


def test_restriction_window_over_fall_back_covers_both_occurrences() -> None:
    schedule = sched([{**WEEKDAY_DAYTIME, "restrictions": {"time_ranges": [{"start": "02:00", "end": "03:00"}]}}])
    first = local("Europe/Berlin", 2025, 10, 26, 2, 30, fold=0)
    second = local("Europe/Berlin", 2025, 10, 26, 2, 30, fold=1)
    assert who_is_on_call(schedule, first).user == "cy"
    assert who_is_on_call(schedule, second).user == "cy"
    (only,) = [s for s in shifts(schedule, local("Europe/Berlin", 2025, 10, 26), local("Europe/Berlin", 2025, 10, 26, 12))]
    assert only.end - only.start == timedelta(hours=2)


def test_naive_instant_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        who_is_on_call(sched([DAILY]), datetime(2025, 1, 1))


# ----------------------------------------------------------------- validation

VALID = {"id": "ops", "name": "Ops", "time_zone": "Europe/Berlin", "layers": [DAILY]}

# (id, patch applied to VALID, expected error loc, message fragment)
INVALID = [
    ("bad-zone", {"time_zone": "Europe/Berln"}, ("time_zone",), "IANA"),
    ("extra-field", {"colour": "red"}, ("colour",), "Extra inputs"),
    ("no-layers", {"layers": []}, ("layers",), "at least 1"),
    ("dup-layer", {"layers": [DAILY, DAILY]}, ("layers",), "duplicates layers[0].name"),
    ("reserved-name", {"layers": [{**DAILY, "name": "override"}]}, ("layers", 0, "name"), "reserved"),
    ("no-users", {"layers": [{**DAILY, "users": []}]}, ("layers", 0, "users"), "at least 1"),
    ("blank-user", {"layers": [{**DAILY, "users": ["  "]}]}, ("layers", 0, "users", 0), "at least 1"),
    ("bad-rotation", {"layers": [{**DAILY, "rotation": "1x"}]}, ("layers", 0, "rotation"), "not a duration"),
    ("short-rotation", {"layers": [{**DAILY, "rotation": "30m"}]}, ("layers", 0, "rotation"), "at least 1h"),
    ("yaml-sexagesimal-start", {"layers": [{**DAILY, "start": 540}]}, ("layers", 0, "start"), "ISO date-time"),
    ("bad-weekday", {"layers": [{**DAILY, "restrictions": {"weekdays": ["mo"]}}]}, ("layers", 0, "restrictions", "weekdays", 0), "not a weekday"),
    ("dup-weekday", {"layers": [{**DAILY, "restrictions": {"weekdays": ["mon", "Monday"]}}]}, ("layers", 0, "restrictions", "weekdays"), "twice"),
    ("empty-restrictions", {"layers": [{**DAILY, "restrictions": {}}]}, ("layers", 0, "restrictions"), "weekdays and/or time_ranges"),
    ("unquoted-time", {"layers": [{**DAILY, "restrictions": {"time_ranges": [{"start": 540, "end": "17:00"}]}}]},
        ("layers", 0, "restrictions", "time_ranges", 0, "start"), "quoted"),
    ("bad-time", {"layers": [{**DAILY, "restrictions": {"time_ranges": [{"start": "09:00", "end": "25:00"}]}}]},
        ("layers", 0, "restrictions", "time_ranges", 0, "end"), "time"),
    ("override-end-before-start", {"overrides": [{"user": "a", "start": "2025-01-02T00:00", "end": "2025-01-01T00:00"}]},
        ("overrides", 0, "end"), "after start"),
    ("override-mixed-awareness", {"overrides": [{"user": "a", "start": "2025-01-01T00:00", "end": "2025-01-02T00:00Z"}]},
        ("overrides", 0, "end"), "both"),
    ("bad-id", {"id": "Ops Team"}, ("id",), "pattern"),
]


@pytest.mark.parametrize(("patch", "loc", "fragment"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_validation_names_the_field(patch, loc, fragment) -> None:
    with pytest.raises(ValidationError) as info:
        Schedule.model_validate({**VALID, **patch})
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [loc]
    assert fragment in errors[0]["msg"]


def test_yaml_document_round_trip() -> None:
    doc = """
id: platform
name: Platform on-call
time_zone: America/New_York
layers:
  - name: weekly
    users: [ann, bob, cy]
    rotation: 7d
    start: 2025-01-06T09:00:00
  - name: business-hours
    users: [dee]
    rotation: 1d
    start: "09:00"
    restrictions:
      weekdays: [mon, tue, wed, thu, fri]
      time_ranges:
        - {start: "09:00", end: "17:00"}
overrides:
  - {user: eve, start: 2025-01-08T12:00:00-05:00, end: 2025-01-08T14:00:00-05:00}
"""
    schedule = Schedule.model_validate(yaml.safe_load(doc))
    ny = ZoneInfo("America/New_York")
    assert who_is_on_call(schedule, datetime(2025, 1, 8, 13, tzinfo=ny)).user == "eve"
    assert who_is_on_call(schedule, datetime(2025, 1, 8, 16, tzinfo=ny)).user == "dee"
    assert who_is_on_call(schedule, datetime(2025, 1, 13, 8, tzinfo=ny)).user == "ann"
    assert who_is_on_call(schedule, datetime(2025, 1, 13, 9, tzinfo=ny)).user == "dee"
    assert who_is_on_call(schedule, datetime(2025, 1, 18, 10, tzinfo=ny)).user == "bob"
    # Unquoted 9:00 is a YAML 1.1 base-60 number: rejected with a hint, not read as 00:09.
    with pytest.raises(ValidationError, match="quoted"):
        Schedule.model_validate(yaml.safe_load(doc.replace('{start: "09:00"', "{start: 9:00")))


@pytest.mark.parametrize(
    ("text", "bare", "expected"),
    [("15m", None, timedelta(minutes=15)), ("1h30m", None, timedelta(minutes=90)), ("2w", None, timedelta(days=14)),
     ("1d 12h", None, timedelta(hours=36)), (0, None, timedelta(0)), (12, "h", timedelta(hours=12)), ("36", "h", timedelta(hours=36))],
)
def test_parse_duration(text, bare, expected) -> None:
    assert parse_duration(text, bare_unit=bare) == expected


@pytest.mark.parametrize("text", ["", "5", 5, "1h1h", "h", "1.5h", "-1h", True, None])
def test_parse_duration_rejects(text) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
