"""On-call schedules: layered rotations, restrictions and overrides, resolved DST-correctly.

A ``Schedule`` is declared in YAML (``pulse config apply``) and validated here; every error
names its field path (``layers[1].restrictions.time_ranges[0].end``).

Semantics
---------
* Priority: overrides beat layers; among overrides and among layers the later-listed one
  wins where it has someone on call. A layer's restrictions leave gaps that lower layers
  fill; where no source has anyone, nobody is on call (``user=None``).
* Rotations advance in the schedule zone's *wall-clock* time: turn ``k`` of a layer starts
  at local ``start + k * rotation`` (naive arithmetic), so a daily 09:00 Europe/Berlin
  handoff stays at 09:00 local across DST changes, and a "12h" rotation hands off at the
  same two local times every day (the turn that spans a DST change is 11 h or 13 h long).
  Rotation turns keep running through restriction gaps (the turn is not paused).
* Local -> instant conversion uses ``zoneinfo`` with ``fold=0``: an ambiguous local time
  (clock set back) means its *first* occurrence; a non-existent local time (clock set
  forward) keeps the pre-transition offset, i.e. it is shifted *forward* by the gap
  (02:30 on Berlin's spring-forward day -> 03:30 CEST). If a gap were ever longer than the
  rotation (Pacific/Apia skipped a whole day in 2011), turn boundaries could come out of
  order; the turn on call at ``t`` is then defined as the highest ``k`` whose start is
  <= ``t``, so the timeline stays well defined.
* Restrictions: a layer is active at ``t`` iff ``t`` falls in a window
  ``[local(d + range.start), local(d + range.end))`` for a local date ``d`` whose weekday is
  allowed. A range whose end is <= its start runs past midnight and belongs to the weekday
  it *starts* on ("mon-fri 22:00-06:00" covers Friday night until Saturday 06:00); "24:00"
  is accepted as an end. Without time ranges, allowed weekdays are active all day.
* All returned instants are timezone-aware UTC datetimes; every input instant must be
  timezone-aware. Naive datetimes in the *config* (layer start, override start/end) are
  local wall times in the schedule's zone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, available_timezones

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    TypeAdapter,
    field_validator,
    model_validator,
)

__all__ = [
    "OVERRIDE",
    "Layer",
    "OnCallResult",
    "Override",
    "Restrictions",
    "Schedule",
    "Shift",
    "TimeRange",
    "parse_duration",
    "shifts",
    "to_ical",
    "who_is_on_call",
]

UTC = timezone.utc
OVERRIDE = "override"  # the `layer` reported when an override decides who is on call
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"  # same id rule as pulse.config

# Any real UTC offset (LMT included) lies within +-16 h; this bounds how far a local
# wall time can be from the instant it denotes, which bounds every search below.
_MAX_OFFSET = timedelta(hours=16)
# A week plus slack for a skipped day: every restricted layer has a window in it.
_GAP_SEARCH = timedelta(days=9)
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ANCHOR_MONDAY = date(2000, 1, 3)  # anchors a time-only layer start (weekly turns start Mondays)


# --------------------------------------------------------------------------- parsing

_DURATION_TOKEN = re.compile(r"(\d+)([wdhms])")
_UNIT = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1),
         "m": timedelta(minutes=1), "s": timedelta(seconds=1)}


def parse_duration(value: Any, *, bare_unit: str | None = None) -> timedelta:
    """Parse ``"15m"``, ``"1h30m"``, ``"7d"``, ``"2w"`` (units w d h m s) or a timedelta.

    A bare number is read in ``bare_unit`` ("h" for rotations); without one only ``0`` is
    accepted, because "5" could mean seconds or minutes and a pager must not guess.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '15m' or '12h', not a boolean")
    if isinstance(value, (int, float)):
        if bare_unit is not None:
            if not math.isfinite(value):
                raise ValueError("duration must be finite")
            return value * _UNIT[bare_unit]
        if value == 0:
            return timedelta(0)
        raise ValueError(f"duration {value!r} has no unit: write e.g. '{value}m' or '{value}s'")
    if not isinstance(value, str):
        raise ValueError(f"expected a duration string such as '15m', got {type(value).__name__}")
    if re.fullmatch(r"P(?:\d+W|(?:\d+D)?(?:T(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?)", value.strip()) \
            and value.strip() not in ("P", "PT"):
        # ISO 8601, which is how model_dump(mode="json") writes a timedelta: the form
        # config_objects stores, so applied policies and schedules must read it back.
        return TypeAdapter(timedelta).validate_python(value.strip())
    text = value.strip().lower().replace(" ", "")
    if bare_unit is not None and re.fullmatch(r"\d+", text):
        return int(text) * _UNIT[bare_unit]
    if text == "0":
        return timedelta(0)
    if not text or _DURATION_TOKEN.sub("", text):
        raise ValueError(f"{value!r} is not a duration: use numbers with units w/d/h/m/s, e.g. '1h30m'")
    total = timedelta(0)
    seen: set[str] = set()
    for number, unit in _DURATION_TOKEN.findall(text):
        if unit in seen:
            raise ValueError(f"{value!r} repeats the unit {unit!r}")
        seen.add(unit)
        total += int(number) * _UNIT[unit]
    return total


def _rotation(value: Any) -> timedelta:
    rotation = parse_duration(value, bare_unit="h")
    if rotation < timedelta(hours=1):
        raise ValueError("rotation must be at least 1h")
    if rotation % timedelta(minutes=1):
        raise ValueError("rotation must be a whole number of minutes")
    return rotation


def _time_of_day(value: Any) -> Any:
    # YAML 1.1 reads an unquoted 9:00 as the number 540 (base 60); refuse rather than
    # let pydantic read it as 540 seconds past midnight.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError("time of day must be a quoted 'HH:MM' string (YAML reads unquoted 9:00 as 540)")
    if isinstance(value, str) and value.strip() in ("24:00", "24:00:00"):
        return time(0)  # end of day; a range ending at 00:00 runs to midnight anyway
    return value


def _no_number(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError("expected an ISO date-time such as '2025-01-06T09:00' (quote it in YAML)")
    return value


_DAY_NAMES = {"monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu",
              "friday": "fri", "saturday": "sat", "sunday": "sun"}


def _weekday(value: Any) -> Any:
    if isinstance(value, str):
        key = value.strip().lower()
        key = _DAY_NAMES.get(key, key)
        if key in _WEEKDAYS:
            return key
    raise ValueError(f"{value!r} is not a weekday: use mon, tue, wed, thu, fri, sat or sun")


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _check_zone(value: str) -> str:
    if value not in _zones():
        raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin)")
    return value


Rotation = Annotated[timedelta, BeforeValidator(_rotation)]
TimeOfDay = Annotated[time, BeforeValidator(_time_of_day)]
Weekday = Annotated[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], BeforeValidator(_weekday)]
UserId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LocalOrAware = Annotated[datetime, BeforeValidator(_no_number)]


# --------------------------------------------------------------------------- models


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeRange(_Strict):
    """A local time-of-day window; ``end <= start`` runs past midnight (equal = 24 h)."""

    start: TimeOfDay
    end: TimeOfDay

    @field_validator("start", "end")
    @classmethod
    def _naive(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("time of day is local to the schedule's zone: drop the offset")
        return value


class Restrictions(_Strict):
    """When a layer may page: allowed weekdays and/or time-of-day ranges, in the zone."""

    weekdays: list[Weekday] | None = Field(default=None, min_length=1)
    time_ranges: list[TimeRange] | None = Field(default=None, min_length=1)

    @field_validator("weekdays")
    @classmethod
    def _unique_days(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("weekdays lists a day twice")
        return value

    @model_validator(mode="after")
    def _something(self) -> Restrictions:
        if self.weekdays is None and self.time_ranges is None:
            raise ValueError("restrictions need weekdays and/or time_ranges (omit restrictions for always)")
        return self


class Layer(_Strict):
    name: str = Field(min_length=1, max_length=100)
    users: list[UserId] = Field(min_length=1, description="rotation order; users[0] starts at `start`")
    rotation: Rotation = Field(description="turn length: '12h', '1d', '7d', '2w' or a number of hours")
    start: Annotated[datetime | time, BeforeValidator(_no_number)] = Field(
        description="first handoff (users[0] starts), local to the schedule's zone unless it carries an "
        "offset; a bare time anchors the rotation on Monday 2000-01-03"
    )
    restrictions: Restrictions | None = None

    @field_validator("start")
    @classmethod
    def _local_time(cls, value: datetime | time) -> datetime | time:
        if isinstance(value, time) and value.tzinfo is not None:
            raise ValueError("a bare handoff time is local to the schedule's zone: drop the offset")
        return value

    @field_validator("name")
    @classmethod
    def _reserved(cls, value: str) -> str:
        if value == OVERRIDE:
            raise ValueError(f"{OVERRIDE!r} is reserved for overrides")
        return value


class Override(_Strict):
    user: UserId
    start: LocalOrAware
    end: LocalOrAware

    @field_validator("end")
    @classmethod
    def _after_start(cls, end: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is None:
            return end
        if (start.tzinfo is None) != (end.tzinfo is None):
            raise ValueError("start and end must both be local or both carry an offset")
        if end <= start:
            raise ValueError("end must be after start")
        return end


class Schedule(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1)
    time_zone: str = Field(description="IANA zone, e.g. Europe/Berlin")
    layers: list[Layer] = Field(min_length=1, description="later layers win where they have someone")
    overrides: list[Override] = Field(default_factory=list, description="win over layers; later wins")

    _zone = field_validator("time_zone")(_check_zone)

    @field_validator("layers")
    @classmethod
    def _unique_layer_names(cls, layers: list[Layer]) -> list[Layer]:
        seen: dict[str, int] = {}
        for index, layer in enumerate(layers):
            if layer.name in seen:
                raise ValueError(f"layers[{index}].name {layer.name!r} duplicates layers[{seen[layer.name]}].name")
            seen[layer.name] = index
        return layers

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True)
class OnCallResult:
    """Who is on call at one instant.

    ``start``/``end`` bound the stretch around the instant during which the same source
    (override, or layer and rotation turn) keeps this user on call - a sub-interval of the
    ``Shift`` that ``shifts()`` reports, which also merges consecutive turns of one user.
    When nobody is on call they bound the gap (``None`` if no source is on within ~9 days).
    """

    user: str | None
    layer: str | None  # layer name, "override", or None when nobody is on call
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class Shift:
    """One stretch of the resolved timeline; adjacent stretches of one user are merged."""

    user: str
    start: datetime
    end: datetime
    layer: str  # source at the shift's start
    sources: tuple[str, ...]  # every source that contributed, in order


# --------------------------------------------------------------------------- time math


@lru_cache(maxsize=65536)
def _localize(zone_key: str, local: datetime) -> datetime:
    """Local wall time -> UTC instant; fold=0: first of two, forward across a gap."""
    return local.replace(tzinfo=ZoneInfo(zone_key), fold=0).astimezone(UTC)


def _aware(t: datetime, what: str) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return t.astimezone(UTC)


def _config_instant(t: datetime, zone_key: str) -> datetime:
    return _localize(zone_key, t) if t.tzinfo is None else t.astimezone(UTC)


def _local_date(t: datetime, zone_key: str) -> date:
    return t.astimezone(ZoneInfo(zone_key)).date()


@dataclass(frozen=True)
class _Plan:
    """A layer prepared for evaluation in its schedule's zone."""

    name: str
    users: tuple[str, ...]
    rotation: timedelta
    anchor: datetime  # naive local wall time of turn 0
    restrictions: Restrictions | None
    zone_key: str

    @property
    def reach(self) -> int:
        # turns within which a local time and its instant can disagree
        return math.ceil(_MAX_OFFSET / self.rotation) + 1

    def boundary(self, k: int) -> datetime:
        return _localize(self.zone_key, self.anchor + k * self.rotation)

    def turn_index(self, t: datetime) -> int:
        """Highest k whose turn starts at or before t (see module doc for why 'highest')."""
        k0 = (t.replace(tzinfo=None) - self.anchor) // self.rotation
        for k in range(k0 + self.reach, k0 - self.reach - 1, -1):
            if self.boundary(k) <= t:
                return k
        raise AssertionError("unreachable: offsets are bounded by _MAX_OFFSET")  # pragma: no cover

    def turn_bounds(self, k: int) -> tuple[datetime, datetime]:
        end = min(self.boundary(j) for j in range(k + 1, k + 2 + 2 * self.reach))
        return self.boundary(k), end

    def boundaries(self, a: datetime, b: datetime) -> Iterator[datetime]:
        # k*(t) is non-decreasing in t, so inside (a, b) it can only step to k in (k*(a), k*(b)].
        for k in range(self.turn_index(a) + 1, self.turn_index(b) + 1):
            instant = self.boundary(k)
            if a < instant < b:
                yield instant

    def user_for(self, k: int) -> str:
        return self.users[k % len(self.users)]

    def windows(self, a: datetime, b: datetime) -> list[tuple[datetime, datetime]]:
        """Merged intervals within [a, b) where the restrictions let this layer page."""
        if self.restrictions is None:
            return [(a, b)] if a < b else []
        raw = [
            (max(s, a), min(e, b))
            for s, e in _restriction_windows(
                self.restrictions, self.zone_key, _local_date(a, self.zone_key), _local_date(b, self.zone_key)
            )
            if s < b and e > a
        ]
        return _merge(raw)

    def active(self, t: datetime) -> bool:
        if self.restrictions is None:
            return True
        d = _local_date(t, self.zone_key)
        return any(s <= t < e for s, e in _restriction_windows(self.restrictions, self.zone_key, d, d))


def _restriction_windows(
    r: Restrictions, zone_key: str, first: date, last: date
) -> Iterator[tuple[datetime, datetime]]:
    # Windows may start up to a day earlier (overnight ranges) and may be pushed past their
    # date by a DST gap, so look a few days either side of the requested local dates.
    day = timedelta(days=1)
    for ordinal in range(first.toordinal() - 3, last.toordinal() + 2):
        d = date.fromordinal(ordinal)
        if r.weekdays is not None and _WEEKDAYS[d.weekday()] not in r.weekdays:
            continue
        midnight = datetime.combine(d, time(0))
        if r.time_ranges is None:
            yield _localize(zone_key, midnight), _localize(zone_key, midnight + day)
            continue
        for tr in r.time_ranges:
            local_start = datetime.combine(d, tr.start)
            local_end = datetime.combine(d if tr.end > tr.start else d + day, tr.end)
            s, e = _localize(zone_key, local_start), _localize(zone_key, local_end)
            if s < e:  # a range inside a DST gap can collapse to nothing
                yield s, e


def _merge(intervals: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for s, e in sorted(intervals):
        if s >= e:
            continue
        if merged and s <= merged[-1][1]:
            if e > merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def _plans(schedule: Schedule) -> list[_Plan]:
    key = schedule.time_zone
    zone = schedule.zone
    plans = []
    for layer in schedule.layers:
        if isinstance(layer.start, datetime):
            anchor = layer.start
            if anchor.tzinfo is not None:
                anchor = anchor.astimezone(zone).replace(tzinfo=None, fold=0)
        else:
            anchor = datetime.combine(_ANCHOR_MONDAY, layer.start.replace(tzinfo=None))
        plans.append(_Plan(layer.name, tuple(layer.users), layer.rotation, anchor, layer.restrictions, key))
    return plans


def _overrides(schedule: Schedule) -> list[tuple[str, datetime, datetime]]:
    key = schedule.time_zone
    out = []
    for o in schedule.overrides:
        s, e = _config_instant(o.start, key), _config_instant(o.end, key)
        # Local 02:30-03:00 on a spring-forward day names no real time: both ends shift
        # forward and the override is empty, so it is dropped rather than turned around.
        if s < e:
            out.append((o.user, s, e))
    return out


def _winner(
    plans: list[_Plan], overrides: list[tuple[str, datetime, datetime]], t: datetime
) -> tuple[str, str, int] | None:
    """(user, source, index) deciding t; index is into overrides or plans."""
    for i in range(len(overrides) - 1, -1, -1):
        user, s, e = overrides[i]
        if s <= t < e:
            return user, OVERRIDE, i
    for j in range(len(plans) - 1, -1, -1):
        plan = plans[j]
        if plan.active(t):
            return plan.user_for(plan.turn_index(t)), plan.name, j
    return None


# --------------------------------------------------------------------------- public API


def who_is_on_call(schedule: Schedule, t: datetime) -> OnCallResult:
    """Who is on call at instant ``t`` (timezone-aware), and for which stretch."""
    t = _aware(t, "t")
    plans, overrides = _plans(schedule), _overrides(schedule)
    won = _winner(plans, overrides, t)

    if won is None:
        lo, hi = t - _GAP_SEARCH, t + _GAP_SEARCH
        on = [(s, e) for _, s, e in overrides] + [w for p in plans for w in p.windows(lo, hi)]
        before = [e for s, e in on if e <= t]
        after = [s for s, e in on if s > t]
        return OnCallResult(None, None, max(before) if before else None, min(after) if after else None)

    user, source, index = won
    if source == OVERRIDE:
        _, s0, e0 = overrides[index]
        blockers = [(s, e) for _, s, e in overrides[index + 1 :]]
    else:
        plan = plans[index]
        s0, e0 = plan.turn_bounds(plan.turn_index(t))
        s0, e0 = next((s, e) for s, e in plan.windows(s0, e0) if s <= t < e)
        blockers = [(s, e) for _, s, e in overrides] + [w for p in plans[index + 1 :] for w in p.windows(s0, e0)]
    # No blocker covers t (else it would have won); the nearest ones on each side clip.
    start = max([s0] + [e for s, e in blockers if s < e <= t and e > s0])
    end = min([e0] + [s for s, e in blockers if t < s < e0])
    return OnCallResult(user, source, start, end)


def shifts(schedule: Schedule, start: datetime, end: datetime) -> list[Shift]:
    """The resolved timeline clipped to [start, end): who is on call when, gaps omitted."""
    a, b = _aware(start, "start"), _aware(end, "end")
    if b <= a:
        return []
    plans, overrides = _plans(schedule), _overrides(schedule)
    # The winner can only change where some source starts or stops, so evaluating once
    # per elementary segment gives the whole timeline.
    points = {a, b}
    for plan in plans:
        points.update(plan.boundaries(a, b))
        for s, e in plan.windows(a, b):
            points.update((s, e))
    for _, s, e in overrides:
        points.update(x for x in (s, e) if a < x < b)
    ordered = sorted(points)

    out: list[Shift] = []
    for p, q in zip(ordered, ordered[1:]):
        won = _winner(plans, overrides, p)
        if won is None:
            continue
        user, source, _ = won
        last = out[-1] if out else None
        if last is not None and last.user == user and last.end == p:
            sources = last.sources if source in last.sources else last.sources + (source,)
            out[-1] = Shift(user, last.start, q, last.layer, sources)
        else:
            out.append(Shift(user, p, q, source, (source,)))
    return out


def to_ical(schedule: Schedule, start: datetime, end: datetime, *, dtstamp: datetime | None = None) -> str:
    """iCalendar (RFC 5545) export: one VEVENT per resolved shift in [start, end), UTC times.

    Uses the `icalendar` package (small, pure Python, maintained) for escaping, line folding
    and CRLF endings instead of hand-rolling them. ``dtstamp`` defaults to now; pass it to
    get byte-identical output for the same input.
    """
    from icalendar import Calendar, Event  # imported here: only exports need it

    stamp = _aware(dtstamp, "dtstamp") if dtstamp is not None else datetime.now(UTC).replace(microsecond=0)
    cal = Calendar()
    cal.add("prodid", "-//OpsConductor Pulse//On-call//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", f"On call: {schedule.name}")
    for shift in shifts(schedule, start, end):
        event = Event()
        # Stable UID: re-exports of the same shift update the event instead of duplicating it.
        event.add("uid", f"{schedule.id}-{shift.start:%Y%m%dT%H%M%SZ}-{shift.user}@oncall.opsconductor-pulse")
        event.add("dtstamp", stamp)
        event.add("dtstart", shift.start)
        event.add("dtend", shift.end)
        event.add("summary", f"On call: {shift.user}")
        event.add("description", f"Schedule {schedule.name} ({schedule.id}); source: {', '.join(shift.sources)}")
        event.add("categories", [schedule.id])
        event.add("transp", "TRANSPARENT")
        cal.add_component(event)
    return cal.to_ical().decode("utf-8")
