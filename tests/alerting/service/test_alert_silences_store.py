"""Recurring silences (cron / RRULE, in a time zone, scheduled ahead) and idempotent storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerting import store
from alerting.engine import DeviceInfo, Engine, Reading
from alerting.silences import Silence, add_silence, is_silenced, list_silences, matcher_from_options
from pulse.errors import UserError

BERLIN = "Europe/Berlin"
LABELS = {"tenant_id": "acme", "site_id": "s1", "device_id": "d1", "rule_id": "hot", "severity": "critical",
          "tag.line": "a"}


def utc(*a) -> datetime:
    return datetime(*a, tzinfo=UTC)


def test_cron_silence_matches_only_inside_each_occurrence_in_its_zone():
    # every Saturday 02:00-04:00 Berlin time (CET = UTC+1 in January, CEST = UTC+2 in July)
    s = Silence(None, {"tenant_id": "acme"}, utc(2026, 1, 1), utc(2027, 1, 1), recurrence="0 2 * * 6",
                duration_s=7200, time_zone=BERLIN)
    assert s.active_at(utc(2026, 1, 3, 1, 0))        # Sat 02:00 Berlin: starts inclusive
    assert s.active_at(utc(2026, 1, 3, 2, 59))
    assert not s.active_at(utc(2026, 1, 3, 3, 0))    # 04:00 Berlin: over
    assert not s.active_at(utc(2026, 1, 3, 0, 59))
    assert not s.active_at(utc(2026, 1, 4, 1, 30))   # Sunday
    assert s.active_at(utc(2026, 7, 4, 0, 30))       # summer: 02:30 CEST
    assert not s.active_at(utc(2026, 7, 4, 2, 30))   # 04:30 CEST
    assert not s.active_at(utc(2027, 1, 2, 1, 30))   # after ends_at


def test_rrule_silence_and_scheduled_ahead():
    s = Silence(None, {"site_id": ["s1", "s2"], "device_id": "~d[0-9]+"}, utc(2026, 3, 2, 9), utc(2026, 4, 1),
                recurrence="FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=0;BYSECOND=0", duration_s=3600)
    assert s.matches(LABELS)
    assert not s.matches({**LABELS, "device_id": "pump-1"})
    assert not s.active_at(utc(2026, 2, 23, 9, 30))  # a Monday before the silence starts (scheduled ahead)
    assert s.active_at(utc(2026, 3, 2, 9, 30))       # Monday
    assert s.active_at(utc(2026, 3, 4, 9, 0))        # Wednesday, at the start
    assert not s.active_at(utc(2026, 3, 4, 10, 0))
    assert not s.active_at(utc(2026, 3, 3, 9, 30))   # Tuesday
    assert is_silenced(LABELS, utc(2026, 3, 9, 9, 15), [s]) is s
    assert is_silenced(LABELS, utc(2026, 3, 9, 11, 0), [s]) is None


def test_silence_validation_errors(pg_url):
    with psycopg.connect(pg_url) as conn:
        m = matcher_from_options(tenant="acme")
        with pytest.raises(UserError, match="neither a cron"):
            add_silence(conn, matchers=m, starts_at=utc(2026, 1, 1), ends_at=utc(2026, 2, 1), created_by="x",
                        recurrence="every saturday", duration_s=60)
        with pytest.raises(UserError, match="positive --duration"):
            add_silence(conn, matchers=m, starts_at=utc(2026, 1, 1), ends_at=utc(2026, 2, 1), created_by="x",
                        recurrence="0 2 * * 6")
        with pytest.raises(UserError, match="at least one matcher"):
            add_silence(conn, matchers={}, starts_at=utc(2026, 1, 1), ends_at=utc(2026, 2, 1), created_by="x")
        s = add_silence(conn, matchers=m, starts_at=utc(2030, 1, 1), ends_at=utc(2030, 2, 1), created_by="ops",
                        recurrence="FREQ=DAILY;BYHOUR=3", duration_s=600, time_zone=BERLIN)
        listed = list_silences(conn, tenant_id="acme")
    assert [(x["silence_id"], x["active_now"], x["created_by"]) for x in listed] == [(s.silence_id, False, "ops")]


def test_replayed_transitions_are_stored_once(pg_url):
    eng = Engine([{"id": "hot", "kind": "threshold", "metric": "t", "op": ">", "value": 1}],
                 [DeviceInfo("acme", "d1")])
    t0 = utc(2026, 1, 1)
    out = eng.observe(Reading("acme", "d1", t0, {"t": 5})) + eng.observe(Reading("acme", "d1", t0 + timedelta(seconds=1), {"t": 0}))
    with psycopg.connect(pg_url) as conn:
        first = store.record_transitions(conn, out)
        again = store.record_transitions(conn, out)
        assert (first.events, first.outbox, again.events, again.outbox, again.duplicates) == (2, 2, 0, 0, 2)
        assert conn.execute("select state, count(*) over () from alerts").fetchall() == [("resolved", 1)]
        # replaying only the opening transition does not reopen the resolved alert
        store.record_transitions(conn, out[:1])
        assert conn.execute("select state from alerts").fetchone() == ("resolved",)
        assert conn.execute("select count(*) from alert_events").fetchone() == (2,)
