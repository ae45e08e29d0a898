"""iCalendar export: structure, escaping, and agreement with shifts()."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import icalendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.oncall import Schedule, shifts, to_ical

UTC = timezone.utc
STAMP = datetime(2025, 1, 1, tzinfo=UTC)


def _schedule(zone: str, users: list[str], rotation: str, start: str, overrides=()) -> Schedule:
    return Schedule.model_validate({
        "id": "ops", "name": "Ops, night; team", "time_zone": zone,
        "layers": [{"name": "base", "users": users, "rotation": rotation, "start": start},
                   {"name": "day", "users": ["dee"], "rotation": "1d", "start": "09:00",
                    "restrictions": {"weekdays": ["mon", "wed"], "time_ranges": [{"start": "10:00", "end": "12:00"}]}}],
        "overrides": list(overrides),
    })


def _unfold(text: str) -> list[str]:
    """RFC 5545 3.1: CRLF-separated content lines; a line starting with a space continues."""
    assert text.endswith("\r\n")
    raw = text[:-2].split("\r\n")
    for line in raw:
        assert "\n" not in line and "\r" not in line  # no bare LF or CR anywhere
        assert len(line.encode()) <= 75
    lines: list[str] = []
    for line in raw:
        if line.startswith(" "):
            lines[-1] += line[1:]
        else:
            lines.append(line)
    return lines


def _events(text: str) -> list[dict[str, str]]:
    """A tiny independent parser: VCALENDAR > VEVENT*, property name -> raw value."""
    lines = _unfold(text)
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-1] == "END:VCALENDAR"
    head = dict(line.split(":", 1) for line in lines[1:] if not line.startswith(("BEGIN", "END")) and ":" in line)
    assert head["VERSION"] == "2.0" and head["PRODID"]
    events, current = [], None
    for line in lines[1:-1]:
        if line == "BEGIN:VEVENT":
            assert current is None
            current = {}
        elif line == "END:VEVENT":
            assert current is not None
            events.append(current)
            current = None
        elif current is not None:
            name, value = line.split(":", 1)
            assert name not in current
            current[name] = value
    assert current is None
    return events


def _utc(value: str) -> datetime:
    return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\":
            nxt = value[i + 1]
            out.append("\n" if nxt in "nN" else nxt)
            i += 2
        else:
            assert value[i] not in ",;"  # TEXT must escape these
            out.append(value[i])
            i += 1
    return "".join(out)


def test_ical_structure_and_escaping() -> None:
    tricky = "o'neil, jr; back\\slash"
    schedule = _schedule("Europe/Berlin", [tricky, "bob"], "1d", "2025-03-28T09:00")
    a, b = datetime(2025, 3, 29, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)
    text = to_ical(schedule, a, b, dtstamp=STAMP)
    events = _events(text)
    expected = shifts(schedule, a, b)
    assert len(events) == len(expected) >= 4
    for ev, sh in zip(events, expected):
        assert {"UID", "DTSTAMP", "DTSTART", "DTEND", "SUMMARY"} <= set(ev)
        assert (_utc(ev["DTSTART"]), _utc(ev["DTEND"])) == (sh.start, sh.end)
        assert _unescape(ev["SUMMARY"]) == f"On call: {sh.user}"
        assert ev["DTSTAMP"] == "20250101T000000Z"
    assert "On call: o'neil\\, jr\\; back\\\\slash" in text
    assert len({ev["UID"] for ev in events}) == len(events)
    # Deterministic for a fixed dtstamp: re-exports update the same events.
    assert to_ical(schedule, a, b, dtstamp=STAMP) == text


def test_ical_parses_back_with_icalendar() -> None:
    schedule = _schedule("America/New_York", ["ann", "bob"], "12h", "2025-11-01T08:00",
                         [{"user": "eve", "start": "2025-11-02T01:30", "end": "2025-11-02T03:00"}])
    a, b = datetime(2025, 11, 1, 12, tzinfo=UTC), datetime(2025, 11, 4, tzinfo=UTC)
    cal = icalendar.Calendar.from_ical(to_ical(schedule, a, b, dtstamp=STAMP))
    parsed = [(str(e["SUMMARY"]), e.decoded("DTSTART"), e.decoded("DTEND")) for e in cal.walk("VEVENT")]
    assert parsed == [(f"On call: {s.user}", s.start, s.end) for s in shifts(schedule, a, b)]
    assert all(start.tzinfo is not None and start.utcoffset() == timedelta(0) for _, start, _ in parsed)
    assert "eve" in {p[0].removeprefix("On call: ") for p in parsed}


def test_empty_range_is_a_valid_empty_calendar() -> None:
    schedule = _schedule("Asia/Kolkata", ["ann"], "1d", "09:00")
    t = datetime(2025, 1, 1, tzinfo=UTC)
    assert _events(to_ical(schedule, t, t, dtstamp=STAMP)) == []


def test_ical_rejects_naive_range() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        to_ical(_schedule("Asia/Kolkata", ["ann"], "1d", "09:00"), datetime(2025, 1, 1), datetime(2025, 1, 2, tzinfo=UTC))


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "America/Santiago"]),
    st.lists(st.text(alphabet="abc ,;\\:\"é", min_size=1, max_size=12).filter(str.strip), min_size=1, max_size=3),
    st.sampled_from(["6h", "12h", "1d", "7d"]),
    st.datetimes(datetime(2025, 1, 1), datetime(2025, 12, 1)),
    st.integers(1, 20),
)
def test_ical_covers_the_same_shifts(zone, users, rotation, start, days) -> None:
    schedule = _schedule(zone, users, rotation, start.replace(microsecond=0).isoformat())
    a = start.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC).replace(microsecond=0)
    b = a + timedelta(days=days)
    expected = shifts(schedule, a, b)
    events = _events(to_ical(schedule, a, b, dtstamp=STAMP))
    got = [(_unescape(e["SUMMARY"]).removeprefix("On call: "), _utc(e["DTSTART"]), _utc(e["DTEND"])) for e in events]
    assert got == [(s.user, s.start, s.end) for s in expected]
    # Shift times carry no sub-second part here, so the export loses nothing.
    assert got[0][1] >= a and got[-1][2] <= b
