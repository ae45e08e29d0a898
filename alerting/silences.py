"""Silences and maintenance windows: label matchers over a time range, optionally recurring.

A silence matches an alert when every matcher matches the alert's labels (see
``alerting.engine._labels``: ``tenant_id``, ``rule_id``, ``severity``, ``device_id``,
``site_id``, ``device_type``, ``group``, ``tag.<key>`` and the rule's own labels).
Matcher values: ``"v"`` (equal), ``["v1", "v2"]`` (one of), ``"~regex"`` (full match).

A one-off silence is active on ``[starts_at, ends_at)``. A recurring one (``recurrence`` =
an RRULE like ``FREQ=WEEKLY;BYDAY=SA;BYHOUR=2`` or a 5-field cron like ``0 2 * * 6``,
read in ``time_zone``) is active for ``duration_s`` from each occurrence, and only inside
``[starts_at, ends_at)`` — so a maintenance window can be scheduled ahead.

Silenced transitions are recorded (``alert_events.silenced``) but never notified.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pulse.errors import UserError

__all__ = [
    "Silence",
    "matcher_from_options",
    "matches",
    "is_silenced",
    "active_silences",
    "add_silence",
    "list_silences",
    "expire_silence",
    "occurrence_at",
]

# CLI/API option names → alert label keys
_OPTION_LABELS = {"tenant": "tenant_id", "site": "site_id", "device": "device_id", "rule": "rule_id",
                  "severity": "severity", "device_type": "device_type"}


@dataclass(frozen=True)
class Silence:
    silence_id: int | None
    matchers: Mapping[str, Any]
    starts_at: datetime
    ends_at: datetime
    tenant_id: str | None = None
    recurrence: str | None = None
    duration_s: float | None = None
    time_zone: str | None = None
    comment: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    expired_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def active_at(self, at: datetime) -> bool:
        if self.expired_at is not None and self.expired_at <= at:
            return False
        if not (self.starts_at <= at < self.ends_at):
            return False
        if self.recurrence is None:
            return True
        start = occurrence_at(self.recurrence, self.starts_at, at, self.time_zone)
        return start is not None and at < start + timedelta(seconds=self.duration_s or 0)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return matches(self.matchers, labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "silence_id": self.silence_id, "tenant_id": self.tenant_id, "matchers": dict(self.matchers),
            "starts_at": self.starts_at, "ends_at": self.ends_at, "recurrence": self.recurrence,
            "duration_s": self.duration_s, "time_zone": self.time_zone, "comment": self.comment,
            "created_by": self.created_by, "created_at": self.created_at, "expired_at": self.expired_at,
        }


# ------------------------------------------------------------------ matching


def _value_matches(want: Any, have: str | None) -> bool:
    if have is None:
        return False
    if isinstance(want, list):
        return any(_value_matches(w, have) for w in want)
    want = str(want)
    if want.startswith("~"):
        return re.fullmatch(want[1:], have) is not None
    return have == want


def matches(matchers: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Every matcher must match (AND). An empty matcher set matches nothing (a silence of
    everything is almost always a mistake; say ``tenant_id`` explicitly)."""
    if not matchers:
        return False
    return all(_value_matches(want, labels.get(key)) for key, want in matchers.items())


def matcher_from_options(*, tenant: str | None = None, site: str | None = None, device: str | None = None,
                         rule: str | None = None, severity: str | None = None, device_type: str | None = None,
                         tags: Mapping[str, str] | None = None,
                         labels: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build a matcher set from friendly options (tenant/site/device/rule/severity/tags)."""
    out: dict[str, Any] = dict(labels or {})
    for name, value in (("tenant", tenant), ("site", site), ("device", device), ("rule", rule),
                        ("severity", severity), ("device_type", device_type)):
        if value is not None:
            out[_OPTION_LABELS[name]] = value
    for k, v in (tags or {}).items():
        out[f"tag.{k}"] = v
    for key, want in out.items():
        for w in want if isinstance(want, list) else [want]:
            if isinstance(w, str) and w.startswith("~"):
                try:
                    re.compile(w[1:])
                except re.error as exc:
                    raise UserError(f"matcher {key}: invalid regular expression {w[1:]!r}: {exc}") from None
    return out


# ------------------------------------------------------------------ recurrence


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"{name!r} is not an IANA time zone (e.g. Europe/Berlin)") from None


def _is_cron(text: str) -> bool:
    return not text.upper().lstrip().startswith(("RRULE", "FREQ", "DTSTART"))


def validate_recurrence(text: str, starts_at: datetime, time_zone: str | None) -> None:
    tz = _zone(time_zone)
    if _is_cron(text):
        from croniter import croniter

        if not croniter.is_valid(text):
            raise UserError(f"recurrence {text!r} is neither a cron expression (e.g. '0 2 * * 6') "
                            "nor an RRULE (e.g. 'FREQ=WEEKLY;BYDAY=SA;BYHOUR=2')")
        return
    from dateutil.rrule import rrulestr

    try:
        rrulestr(text, dtstart=starts_at.astimezone(tz))
    except (ValueError, TypeError) as exc:
        raise UserError(f"recurrence {text!r}: invalid RRULE: {exc}") from None


def occurrence_at(recurrence: str, starts_at: datetime, at: datetime, time_zone: str | None = None) -> datetime | None:
    """Start of the latest occurrence at or before ``at`` (None if none yet).

    Occurrences are computed in ``time_zone`` wall time (so "02:00 every Saturday" stays
    02:00 across DST); the RRULE's DTSTART is ``starts_at`` in that zone.
    """
    tz = _zone(time_zone)
    local_at = at.astimezone(tz)
    if _is_cron(recurrence):
        from croniter import croniter

        # get_prev is strictly before its base: step 1 µs past `at` so `at` itself counts
        it = croniter(recurrence, local_at + timedelta(microseconds=1))
        prev = it.get_prev(datetime)
        return prev.astimezone(UTC) if prev >= starts_at else None
    from dateutil.rrule import rrulestr

    rule = rrulestr(recurrence, dtstart=starts_at.astimezone(tz).replace(microsecond=0))
    prev = rule.before(local_at, inc=True)
    return None if prev is None else prev.astimezone(UTC)


# ------------------------------------------------------------------ storage


def _row_to_silence(r: Mapping[str, Any]) -> Silence:
    return Silence(silence_id=r["silence_id"], matchers=r["matchers"], starts_at=r["starts_at"], ends_at=r["ends_at"],
                   tenant_id=r["tenant_id"], recurrence=r["recurrence"], duration_s=r["duration_s"],
                   time_zone=r.get("time_zone"), comment=r["comment"], created_by=r["created_by"],
                   created_at=r["created_at"], expired_at=r["expired_at"])


def active_silences(conn: psycopg.Connection, at: datetime, tenant_id: str | None = None) -> list[Silence]:
    """Silences whose range contains ``at`` (recurrence still to be checked by ``active_at``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """select * from silences
               where starts_at <= %(at)s and ends_at > %(at)s
                 and (expired_at is null or expired_at > %(at)s)
                 and (tenant_id is null or %(tenant)s::text is null or tenant_id = %(tenant)s)""",
            {"at": at, "tenant": tenant_id},
        )
        return [_row_to_silence(r) for r in cur.fetchall()]


def is_silenced(labels: Mapping[str, str], at: datetime, silences: list[Silence]) -> Silence | None:
    """The first silence active at ``at`` whose matchers match ``labels``, else None."""
    for s in silences:
        if s.tenant_id is not None and labels.get("tenant_id") != s.tenant_id:
            continue
        if s.matches(labels) and s.active_at(at):
            return s
    return None


def add_silence(conn: psycopg.Connection, *, matchers: Mapping[str, Any], starts_at: datetime, ends_at: datetime,
                created_by: str, comment: str | None = None, recurrence: str | None = None,
                duration_s: float | None = None, time_zone: str | None = None) -> Silence:
    if not matchers:
        raise UserError("a silence needs at least one matcher (--tenant, --site, --device, --rule, --severity, --tag)")
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise UserError("silence times must carry a time zone")
    if ends_at <= starts_at:
        raise UserError(f"silence ends ({ends_at.isoformat()}) before it starts ({starts_at.isoformat()})")
    if recurrence is not None:
        if duration_s is None or duration_s <= 0:
            raise UserError("a recurring silence needs a positive --duration (length of each occurrence)")
        validate_recurrence(recurrence, starts_at, time_zone)
    elif duration_s is not None:
        raise UserError("--duration only applies to a recurring silence (--cron or --rrule)")
    _zone(time_zone)
    tenant = matchers.get("tenant_id") if isinstance(matchers.get("tenant_id"), str) else None
    if tenant is not None and tenant.startswith("~"):
        tenant = None
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """insert into silences (tenant_id, matchers, starts_at, ends_at, recurrence, duration_s, time_zone,
                                     comment, created_by)
               values (%s, %s, %s, %s, %s, %s, %s, %s, %s) returning *""",
            (tenant, Jsonb(dict(matchers)), starts_at, ends_at, recurrence, duration_s, time_zone, comment,
             created_by),
        )
        row = cur.fetchone()
    conn.commit()
    return _row_to_silence(row)


def list_silences(conn: psycopg.Connection, *, tenant_id: str | None = None, include_expired: bool = False,
                  at: datetime | None = None) -> list[dict[str, Any]]:
    """Silences (not expired unless asked), each with ``active_now`` at ``at`` (default now)."""
    at = at or datetime.now(UTC)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """select * from silences
               where (%(tenant)s::text is null or tenant_id is null or tenant_id = %(tenant)s)
                 and (%(all)s or ((expired_at is null or expired_at > %(at)s) and ends_at > %(at)s))
               order by starts_at, silence_id""",
            {"tenant": tenant_id, "all": include_expired, "at": at},
        )
        rows = cur.fetchall()
    out = []
    for r in rows:
        s = _row_to_silence(r)
        d = s.to_dict()
        d["active_now"] = s.active_at(at)
        out.append(d)
    return out


def expire_silence(conn: psycopg.Connection, silence_id: int, *, by: str) -> None:
    row = conn.execute(
        """update silences set expired_at = now(),
               comment = coalesce(comment || ' ', '') || %s
           where silence_id = %s and (expired_at is null or expired_at > now()) returning silence_id""",
        (f"[expired by {by}]", silence_id),
    ).fetchone()
    if row is None:
        exists = conn.execute("select 1 from silences where silence_id = %s", (silence_id,)).fetchone()
        conn.rollback()
        raise UserError(f"silence {silence_id} {'is already expired' if exists else 'does not exist'}")
    conn.commit()
