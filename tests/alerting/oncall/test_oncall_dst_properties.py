"""Property tests: the on-call timeline around DST changes in several zones."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerting.oncall import OVERRIDE, Schedule, Shift, shifts, who_is_on_call

UTC = timezone.utc
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "America/Santiago"]
USERS = ["ann", "bob", "cy", "dee"]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
PROFILE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _transitions(zone: str) -> list[datetime]:
    """UTC instants (to the minute) where the zone's offset changes in 2024-2026."""
    zi = ZoneInfo(zone)
    out, t = [], datetime(2024, 1, 1, tzinfo=UTC)
    prev = t.astimezone(zi).utcoffset()
    while t < datetime(2027, 1, 1, tzinfo=UTC):
        nxt = t + timedelta(hours=1)
        if nxt.astimezone(zi).utcoffset() != prev:
            m = t
            while m.astimezone(zi).utcoffset() == prev:
                m += timedelta(minutes=1)
            out.append(m)
            prev = nxt.astimezone(zi).utcoffset()
        t = nxt
    return out or [datetime(2025, 3, 30, 1, tzinfo=UTC)]  # no DST (Kolkata): any instant


TRANSITIONS = {z: _transitions(z) for z in ZONES}


def test_zone_fixture_has_dst_changes() -> None:
    # Guards the properties below against silently testing no transition at all.
    assert all(len(TRANSITIONS[z]) == 6 for z in ZONES if z != "Asia/Kolkata")


# Times on a half-hour grid reach into DST gaps (02:00-03:00, Santiago's 00:00) on purpose.
local_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 30]))
rotations = st.sampled_from(["1h", "5h", "12h", "1d", "36h", "2d", "7d"])


@st.composite
def layer(draw, name: str, *, restricted: bool | None = None) -> dict:
    start = draw(st.datetimes(datetime(2024, 1, 1), datetime(2026, 12, 1))).replace(second=0, microsecond=0)
    start = start.replace(minute=draw(st.sampled_from([0, 30])))
    spec = {
        "name": name,
        "users": draw(st.lists(st.sampled_from(USERS), min_size=1, max_size=3)),
        "rotation": draw(rotations),
        "start": start.isoformat(),
    }
    if restricted is None:
        restricted = draw(st.booleans())
    if restricted:
        r: dict = {}
        if draw(st.booleans()):
            r["weekdays"] = draw(st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7, unique=True))
        if "weekdays" not in r or draw(st.booleans()):
            r["time_ranges"] = [
                {"start": a.strftime("%H:%M"), "end": b.strftime("%H:%M")}
                for a, b in draw(st.lists(st.tuples(local_times, local_times), min_size=1, max_size=2))
            ]
        spec["restrictions"] = r
    return spec


@st.composite
def scenario(draw, *, restricted: bool | None = None, with_overrides: bool = True):
    zone = draw(st.sampled_from(ZONES))
    pivot = draw(st.sampled_from(TRANSITIONS[zone]))
    a = pivot - timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
    b = pivot + timedelta(minutes=draw(st.integers(1, 3 * 24 * 60)))
    n = draw(st.integers(1, 3))
    layers = [draw(layer(f"l{i}", restricted=restricted)) for i in range(n)]
    overrides = []
    if with_overrides:
        for _ in range(draw(st.integers(0, 2))):
            s = pivot + timedelta(minutes=30 * draw(st.integers(-100, 100)))
            e = s + timedelta(minutes=30 * draw(st.integers(1, 60)))
            zi = ZoneInfo(zone)
            # Local wall-time overrides, as YAML would give them (may hit gaps/ambiguity).
            overrides.append({"user": draw(st.sampled_from(USERS + ["ovi"])),
                              "start": s.astimezone(zi).replace(tzinfo=None).isoformat(),
                              "end": e.astimezone(zi).replace(tzinfo=None).isoformat()})
    # Local conversion of both ends can reorder them at a fall-back; keep only valid ones.
    overrides = [o for o in overrides if o["end"] > o["start"]]
    sched = Schedule.model_validate({"id": "s", "name": "S", "time_zone": zone, "layers": layers, "overrides": overrides})
    return sched, a, b


def _covering(timeline: list[Shift], t: datetime) -> list[Shift]:
    return [s for s in timeline if s.start <= t < s.end]


def _check_well_formed(timeline: list[Shift], a: datetime, b: datetime) -> None:
    for s in timeline:
        assert a <= s.start < s.end <= b
        assert s.layer == s.sources[0]
    for x, y in zip(timeline, timeline[1:]):
        assert x.end <= y.start  # sorted, no overlap
        if x.end == y.start:
            assert x.user != y.user  # touching same-user stretches are merged


@PROFILE
@given(scenario(), st.lists(st.floats(0, 1), min_size=1, max_size=15))
def test_every_instant_matches_the_timeline(case, fractions) -> None:
    schedule, a, b = case
    timeline = shifts(schedule, a, b)
    _check_well_formed(timeline, a, b)
    probes = [a + (b - a) * f for f in fractions]
    # Edges are where off-by-one errors live: each boundary and the instant before it.
    for s in timeline:
        probes += [s.start, s.end - timedelta(microseconds=1)]
        if s.end < b:
            probes.append(s.end)
    for t in probes:
        if not a <= t < b:
            continue
        got = who_is_on_call(schedule, t)
        cover = _covering(timeline, t)
        if got.user is None:
            assert cover == [] and got.layer is None
            # The reported gap holds no shift, and where it ends inside the range a shift touches it.
            lo = max(got.start, a) if got.start is not None else a
            hi = min(got.end, b) if got.end is not None else b
            assert lo <= t < hi
            assert not [s for s in timeline if s.start < hi and s.end > lo]
            if lo > a:
                assert any(s.end == lo for s in timeline)
            if hi < b:
                assert any(s.start == hi for s in timeline)
        else:
            assert [s.user for s in cover] == [got.user]
            assert got.layer in cover[0].sources
            assert got.start <= t < got.end
            # The point result is a piece of the resolved shift.
            assert max(got.start, a) >= cover[0].start and min(got.end, b) <= cover[0].end


@PROFILE
@given(scenario(), st.floats(0.01, 0.99))
def test_split_ranges_give_the_same_timeline(case, f) -> None:
    schedule, a, b = case
    m = a + (b - a) * f
    whole = shifts(schedule, a, b)
    left, right = shifts(schedule, a, m), shifts(schedule, m, b)
    if left and right and left[-1].end == right[0].start == m and left[-1].user == right[0].user:
        joined = left[:-1] + [Shift(left[-1].user, left[-1].start, right[0].end, left[-1].layer,
                                    tuple(dict.fromkeys(left[-1].sources + right[0].sources)))] + right[1:]
    else:
        joined = left + right
    assert [(s.user, s.start, s.end) for s in joined] == [(s.user, s.start, s.end) for s in whole]


@PROFILE
@given(scenario(restricted=False))
def test_unrestricted_shifts_tile_the_range(case) -> None:
    schedule, a, b = case
    timeline = shifts(schedule, a, b)
    assert timeline[0].start == a and timeline[-1].end == b
    for x, y in zip(timeline, timeline[1:]):
        assert x.end == y.start and x.user != y.user


def _expected_instant(zone: ZoneInfo, local) -> datetime:
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


@PROFILE
@given(
    st.sampled_from(ZONES),
    st.data(),
    local_times,
    st.sampled_from([1, 2, 7]),
)
def test_daily_handoffs_keep_local_wall_time(zone, data, handoff, days) -> None:
    """Handoffs land on the configured local time on both sides of each DST change."""
    zi = ZoneInfo(zone)
    pivot = data.draw(st.sampled_from(TRANSITIONS[zone]))
    first = (pivot.astimezone(zi) - timedelta(days=3 * days)).date()
    users = ["ann", "bob", "cy"]
    schedule = Schedule.model_validate({"id": "s", "name": "S", "time_zone": zone, "layers": [
        {"name": "r", "users": users, "rotation": f"{days}d", "start": datetime.combine(first, handoff).isoformat()}]})
    a = _expected_instant(zi, datetime.combine(first, handoff))
    b = a + timedelta(days=6 * days)
    timeline = shifts(schedule, a, b)
    assert len(timeline) >= 5
    for i, s in enumerate(timeline):
        assert s.user == users[i % 3]
        wall = datetime.combine(first + timedelta(days=i * days), handoff)
        assert s.start == _expected_instant(zi, wall)  # fold=0, gaps shift forward
        if _expected_instant(zi, wall).astimezone(zi).replace(tzinfo=None) == wall:
            assert s.start.astimezone(zi).time() == handoff  # exists: exactly on the wall clock


@PROFILE
@given(st.sampled_from(ZONES), st.data(), st.sampled_from([0, 30]), st.integers(0, 11))
def test_12h_rotation_hands_off_at_two_fixed_wall_times(zone, data, minute, hour) -> None:
    zi = ZoneInfo(zone)
    pivot = data.draw(st.sampled_from(TRANSITIONS[zone]))
    first = datetime.combine((pivot.astimezone(zi) - timedelta(days=2)).date(), time(hour, minute))
    schedule = Schedule.model_validate({"id": "s", "name": "S", "time_zone": zone, "layers": [
        {"name": "r", "users": ["ann", "bob"], "rotation": "12h", "start": first.isoformat()}]})
    timeline = shifts(schedule, _expected_instant(zi, first), _expected_instant(zi, first + timedelta(days=4)))
    assert len(timeline) == 8
    for i, s in enumerate(timeline):
        assert s.start == _expected_instant(zi, first + timedelta(hours=12 * i))
        assert s.user == ("ann", "bob")[i % 2]
        assert timedelta(hours=10) <= s.end - s.start <= timedelta(hours=14)


@PROFILE
@given(scenario(with_overrides=False), st.data())
def test_override_always_wins_inside_its_interval(case, data) -> None:
    schedule, a, b = case
    span = (b - a).total_seconds()
    s = a + timedelta(seconds=data.draw(st.floats(0, span * 0.9)))
    e = s + timedelta(seconds=data.draw(st.floats(60, span)))
    data_ = schedule.model_dump()
    with_override = Schedule.model_validate({**data_, "overrides": [*data_["overrides"], {"user": "ovi", "start": s, "end": e}]})
    timeline = shifts(with_override, a, b)
    inside = [x for x in timeline if x.start < min(e, b) and x.end > s]
    assert [x.user for x in inside] == ["ovi"]
    assert OVERRIDE in inside[0].sources
    assert inside[0].start <= s and inside[0].end >= min(e, b)

