"""Escalation policies: validation, planning, ack/resolve stopping, target resolution."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from alerting.escalation import EscalationPolicy, Step, Target, due_steps, next_steps, plan, resolve_targets
from alerting.oncall import Schedule

UTC = timezone.utc
T0 = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)
M = timedelta(minutes=1)


def policy(levels, **extra) -> EscalationPolicy:
    return EscalationPolicy.model_validate({"id": "p", "name": "P", "levels": levels, **extra})


def lvl(delay="0", *ids: str) -> dict:
    return {"delay": delay, "targets": [{"user": i} for i in ids or ("u",)]}


def times(steps: list[Step]) -> list[tuple[int, int, str, int]]:
    return [(int((s.at - T0) / M), s.loop, s.kind, s.level_index) for s in steps]


PLAN_CASES = [
    ("single-level", policy([lvl()]), None, [(0, 0, "notify", 0)]),
    ("delays-are-relative", policy([lvl(0), lvl("5m"), lvl("10m")]), None,
        [(0, 0, "notify", 0), (5, 0, "notify", 1), (15, 0, "notify", 2)]),
    ("first-level-delayed", policy([lvl("2m"), lvl("3m")]), None, [(2, 0, "notify", 0), (5, 0, "notify", 1)]),
    ("repeat-uses-loop-delay", policy([lvl(0), lvl("5m")], repeat=2, loop_delay="30m"), None,
        [(0, 0, "notify", 0), (5, 0, "notify", 1), (35, 1, "notify", 0), (40, 1, "notify", 1),
         (70, 2, "notify", 0), (75, 2, "notify", 1)]),
    ("reminders-between-and-after", policy([lvl(0), lvl("25m")], reminder_interval="10m"), T0 + 50 * M,
        [(0, 0, "notify", 0), (10, 0, "reminder", 0), (20, 0, "reminder", 0), (25, 0, "notify", 1),
         (35, 0, "reminder", 1), (45, 0, "reminder", 1)]),
    ("reminder-not-on-next-level-instant", policy([lvl(0), lvl("20m")], reminder_interval="10m"), T0 + 30 * M,
        [(0, 0, "notify", 0), (10, 0, "reminder", 0), (20, 0, "notify", 1), (30, 0, "reminder", 1)]),
    ("no-trailing-reminders-without-until", policy([lvl(0)], reminder_interval="10m"), None, [(0, 0, "notify", 0)]),
]


@pytest.mark.parametrize(("pol", "until", "expected"), [c[1:] for c in PLAN_CASES], ids=[c[0] for c in PLAN_CASES])
def test_plan(pol, until, expected) -> None:
    assert times(plan(pol, T0, until=until)) == expected


ESC = policy([lvl(0, "a"), lvl("10m", "b"), lvl("10m", "c")], repeat=1, loop_delay="15m")

# (id, now (minutes after T0), ack, resolve, expected due step minutes)
DUE_CASES = [
    ("before-anything", -1, None, None, []),
    ("now-is-inclusive", 0, None, None, [0]),
    ("mid-escalation", 15, None, None, [0, 10]),
    ("all-loops", 200, None, None, [0, 10, 20, 35, 45, 55]),
    ("ack-stops-later-steps", 200, 12, None, [0, 10]),
    ("ack-at-step-instant-cancels-it", 200, 10, None, [0]),
    ("resolve-stops-too", 200, None, 36, [0, 10, 20, 35]),
    ("earliest-of-ack-and-resolve", 200, 50, 21, [0, 10, 20]),
    ("ack-before-now-but-after-steps", 30, 25, None, [0, 10, 20]),
]


@pytest.mark.parametrize(("now", "ack", "res", "expected"), [c[1:] for c in DUE_CASES], ids=[c[0] for c in DUE_CASES])
def test_due_steps(now, ack, res, expected) -> None:
    at = lambda m: None if m is None else T0 + m * M  # noqa: E731
    got = due_steps(ESC, T0, at(now), acknowledged_at=at(ack), resolved_at=at(res))
    assert [int((s.at - T0) / M) for s in got] == expected


def test_next_steps() -> None:
    assert [s.at for s in next_steps(ESC, T0, T0 - M)] == [T0]
    assert [s.at for s in next_steps(ESC, T0, T0)] == [T0 + 10 * M]  # strictly after
    assert next_steps(ESC, T0, T0 + 55 * M) == []  # exhausted
    assert next_steps(ESC, T0, T0 + 5 * M, acknowledged_at=T0 + 7 * M) == []
    nag = policy([lvl(0)], reminder_interval="5m")
    (step,) = next_steps(nag, T0, T0 + 61 * M)
    assert (step.kind, step.reminder, step.at) == ("reminder", 13, T0 + 65 * M)
    # Levels with zero delay fire together: the timer gets both.
    together = policy([lvl(0, "a"), lvl(0, "b"), lvl("5m", "c")])
    assert [s.targets[0].user for s in next_steps(together, T0, T0 - M)] == ["a", "b"]


def test_steps_carry_targets_and_unique_keys() -> None:
    steps = plan(ESC, T0)
    assert [s.targets[0].user for s in steps] == ["a", "b", "c", "a", "b", "c"]
    assert len({s.key for s in steps}) == len(steps)


def test_naive_times_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan(ESC, datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="acknowledged_at"):
        due_steps(ESC, T0, T0, acknowledged_at=datetime(2025, 1, 1))


# ----------------------------------------------------------------- validation

INVALID = [
    ("two-kinds-in-target", {"levels": [{"targets": [{"user": "a", "channel": "c"}]}]}, ("levels", 0, "targets", 0), "exactly one"),
    ("empty-target", {"levels": [{"targets": [{}]}]}, ("levels", 0, "targets", 0), "exactly one"),
    ("unknown-target-kind", {"levels": [{"targets": [{"team": "x"}]}]}, ("levels", 0, "targets", 0, "team"), "Extra"),
    ("no-targets", {"levels": [{"targets": []}]}, ("levels", 0, "targets"), "at least 1"),
    ("no-levels", {"levels": []}, ("levels",), "at least 1"),
    ("unitless-delay", {"levels": [{"delay": 5, "targets": [{"user": "a"}]}]}, ("levels", 0, "delay"), "no unit"),
    ("bad-delay", {"levels": [{"delay": "soon", "targets": [{"user": "a"}]}]}, ("levels", 0, "delay"), "not a duration"),
    ("repeat-needs-loop-delay", {"repeat": 2}, ("loop_delay",), "required when repeat"),
    ("zero-loop-delay", {"repeat": 1, "loop_delay": "0"}, ("loop_delay",), "positive"),
    ("too-many-loops", {"repeat": 99, "loop_delay": "1m"}, ("repeat",), "less than or equal"),
    ("negative-repeat", {"repeat": -1}, ("repeat",), "greater than or equal"),
    ("reminder-too-often", {"reminder_interval": "30s"}, ("reminder_interval",), "at least 1m"),
    ("extra-field", {"colour": "red"}, ("colour",), "Extra"),
]


@pytest.mark.parametrize(("patch", "loc", "fragment"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_validation_names_the_field(patch, loc, fragment) -> None:
    base = {"id": "p", "name": "P", "levels": [lvl()]}
    with pytest.raises(ValidationError) as info:
        EscalationPolicy.model_validate({**base, **patch})
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [loc]
    assert fragment in errors[0]["msg"]


def test_target_kind_and_id() -> None:
    assert [(t.kind, t.id) for t in (Target(user="a"), Target(schedule="s"), Target(channel="c"))] == [
        ("user", "a"), ("schedule", "s"), ("channel", "c")]


# ----------------------------------------------------------------- resolve_targets

PRIMARY = Schedule.model_validate({
    "id": "primary", "name": "Primary", "time_zone": "Europe/Berlin",
    "layers": [{"name": "r", "users": ["ann", "bob"], "rotation": "1d", "start": "2025-03-28T09:00"}],
})
BUSINESS = Schedule.model_validate({
    "id": "business", "name": "Business", "time_zone": "Europe/Berlin",
    "layers": [{"name": "d", "users": ["cy"], "rotation": "7d", "start": "09:00",
                "restrictions": {"time_ranges": [{"start": "09:00", "end": "17:00"}]}}],
})


def test_resolve_targets() -> None:
    step = Step(T0, 0, 0, (Target(schedule="primary"), Target(user="bob"), Target(schedule="business"),
                           Target(channel="slack-ops"), Target(schedule="ghost"), Target(user="ann")))
    # 2025-03-30 00:30 UTC = 01:30 CET: primary's turn from 03-29 09:00 is bob's; business is off.
    got = resolve_targets(step, {"primary": PRIMARY, "business": BUSINESS})
    assert got.users == ("bob", "ann")
    assert got.channels == ("slack-ops",)
    assert got.uncovered_schedules == ("business",)
    assert got.unknown_schedules == ("ghost",)
    # `at` overrides the step time (e.g. a late timer); an iterable of schedules works too.
    later = resolve_targets(step, [PRIMARY, BUSINESS], at=datetime(2025, 3, 31, 10, tzinfo=UTC))
    assert later.users == ("bob", "cy", "ann")  # 12:00 CEST: bob's turn again, cy's window
    assert later.uncovered_schedules == ()


# ----------------------------------------------------------------- properties

minutes = st.integers(0, 90).map(lambda m: m * M)


@st.composite
def policies(draw) -> EscalationPolicy:
    levels = [{"delay": draw(minutes), "targets": [{"user": f"u{i}"}]} for i in range(draw(st.integers(1, 4)))]
    repeat = draw(st.integers(0, 3))
    spec: dict = {"id": "p", "name": "P", "levels": levels, "repeat": repeat}
    if repeat:
        spec["loop_delay"] = draw(st.integers(1, 60)) * M
    if draw(st.booleans()):
        spec["reminder_interval"] = draw(st.integers(1, 30)) * M
    return EscalationPolicy.model_validate(spec)


optional_offset = st.none() | st.integers(-10, 400).map(lambda m: m * M)


@settings(max_examples=150, deadline=None)
@given(policies(), st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)), optional_offset, optional_offset, st.integers(0, 400))
def test_due_steps_properties(pol, t0, ack_off, res_off, now_min) -> None:
    ack = None if ack_off is None else t0 + ack_off
    res = None if res_off is None else t0 + res_off
    now = t0 + now_min * M
    full = plan(pol, t0, until=now)
    assert [s.at for s in full] == sorted(s.at for s in full)
    assert len({s.key for s in full}) == len(full)
    assert sum(s.kind == "notify" for s in full) == len(pol.levels) * (pol.repeat + 1)
    stop = min([x for x in (ack, res) if x is not None], default=None)

    due = due_steps(pol, t0, now, acknowledged_at=ack, resolved_at=res)
    assert due == full[: len(due)]  # a prefix of the plan: steps fire in order
    assert all(s.at <= now and (stop is None or s.at < stop) for s in due)
    rest = full[len(due):]
    assert all(s.at > now or (stop is not None and s.at >= stop) for s in rest)
    # Acknowledging can only remove steps; never adds.
    assert {s.key for s in due} <= {s.key for s in due_steps(pol, t0, now)}

    # An event-driven timer that only ever asks next_steps() fires exactly the due steps.
    fired, cursor = [], t0 - M
    while (batch := next_steps(pol, t0, cursor, acknowledged_at=ack, resolved_at=res)) and batch[0].at <= now:
        assert batch[0].at > cursor
        fired += batch
        cursor = batch[0].at
    assert fired == due


@settings(max_examples=100, deadline=None)
@given(policies(), st.integers(0, 300))
def test_reminders_are_evenly_spaced_and_never_reach_the_next_level(pol, horizon) -> None:
    steps = plan(pol, T0, until=T0 + horizon * M)
    notify = [s for s in steps if s.kind == "notify"]
    for i, n in enumerate(notify):
        mine = [s for s in steps if s.kind == "reminder" and (s.loop, s.level_index) == (n.loop, n.level_index)]
        assert [s.at for s in mine] == [n.at + k * pol.reminder_interval for k in range(1, len(mine) + 1)]
        if i + 1 < len(notify):
            assert all(s.at < notify[i + 1].at for s in mine)
        else:
            assert all(s.at <= T0 + horizon * M for s in mine)
            if pol.reminder_interval is not None and n.at + pol.reminder_interval <= T0 + horizon * M:
                assert mine  # nagging continues after the last level until ack
