"""Escalation policies and the pure planner behind the durable escalation timers.

Timeline of one alert (``triggered_at`` = t0)::

    loop 0:  level 0 at t0 + levels[0].delay, level i at (level i-1) + levels[i].delay
    loop n:  level 0 at (last level of loop n-1) + loop_delay, then as above
    reminders (optional): the most recently notified level again every reminder_interval,
             until the next level is due; after the final level they go on until ack/resolve

``repeat`` is the number of extra loops after the first (0 = run the levels once).
Acknowledging or resolving stops every step at or after that instant. Everything here is
pure: the lead's timer service persists ``Step.key`` per alert to fire each step once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from alerting.oncall import ID_PATTERN, Schedule, parse_duration, who_is_on_call

__all__ = [
    "EscalationPolicy",
    "Level",
    "ResolvedTargets",
    "Step",
    "Target",
    "due_steps",
    "next_steps",
    "plan",
    "resolve_targets",
]

UTC = timezone.utc
MAX_REPEAT = 20  # a policy that loops more than this is paging noise, not escalation
MIN_REMINDER = timedelta(minutes=1)

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Strict):
    """Exactly one of ``user``, ``schedule`` (on-call of that schedule) or ``channel``."""

    user: str | None = Field(default=None, min_length=1)
    schedule: str | None = Field(default=None, min_length=1)
    channel: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        given = [k for k in ("user", "schedule", "channel") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a target names exactly one of user, schedule or channel (got {given or 'none'})")
        return self

    @property
    def kind(self) -> Literal["user", "schedule", "channel"]:
        return "user" if self.user is not None else "schedule" if self.schedule is not None else "channel"

    @property
    def id(self) -> str:
        return self.user or self.schedule or self.channel or ""


class Level(_Strict):
    delay: Duration = Field(
        default=timedelta(0),
        description="wait before notifying this level, from the previous level (level 0: from the trigger)",
    )
    targets: list[Target] = Field(min_length=1)

    @field_validator("delay")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("delay must not be negative")
        return value


class EscalationPolicy(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1)
    levels: list[Level] = Field(min_length=1)
    repeat: int = Field(default=0, ge=0, le=MAX_REPEAT, description="extra loops after the first")
    loop_delay: Duration | None = Field(
        default=None,
        validate_default=True,
        description="wait after the last level before the next loop starts; required when repeat > 0",
    )
    reminder_interval: Duration | None = Field(
        default=None, description="re-notify the latest level this often while unacknowledged"
    )

    @field_validator("loop_delay")
    @classmethod
    def _loop_delay(cls, value: timedelta | None, info: ValidationInfo) -> timedelta | None:
        repeat = info.data.get("repeat")
        if value is None:
            if repeat:
                # Without it the last level would get no time to acknowledge before loop 2.
                raise ValueError("required when repeat > 0 (how long the last level has before starting over)")
            return None
        if value <= timedelta(0):
            raise ValueError("loop_delay must be positive")
        return value

    @field_validator("reminder_interval")
    @classmethod
    def _reminder(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < MIN_REMINDER:
            raise ValueError("reminder_interval must be at least 1m")
        return value

    def schedule_ids(self) -> set[str]:
        return {t.schedule for lvl in self.levels for t in lvl.targets if t.schedule is not None}


@dataclass(frozen=True)
class Step:
    at: datetime
    level_index: int
    loop: int
    targets: tuple[Target, ...]
    kind: Literal["notify", "reminder"] = "notify"
    reminder: int = 0  # 1, 2, ... for reminders after this level's notification

    @property
    def key(self) -> str:
        """Unique within one alert's escalation: the idempotency key for its delivery."""
        return f"{self.loop}:{self.level_index}:{self.kind}:{self.reminder}"


@dataclass(frozen=True)
class ResolvedTargets:
    users: tuple[str, ...]  # direct users and on-call users of schedules, first seen first
    channels: tuple[str, ...]
    uncovered_schedules: tuple[str, ...]  # nobody on call at that instant
    unknown_schedules: tuple[str, ...]  # referenced but not provided


def _aware(t: datetime, what: str) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return t.astimezone(UTC)


def plan(policy: EscalationPolicy, triggered_at: datetime, *, until: datetime | None = None) -> list[Step]:
    """Every step of the policy for an alert triggered at ``triggered_at``, in time order.

    Reminders after the final level are open-ended (they stop only on ack/resolve), so they
    are listed up to ``until`` inclusive, and not at all when ``until`` is None.
    """
    t = _aware(triggered_at, "triggered_at")
    horizon = _aware(until, "until") if until is not None else None
    notify: list[Step] = []
    for loop in range(policy.repeat + 1):
        for index, level in enumerate(policy.levels):
            if index == 0 and loop > 0:
                assert policy.loop_delay is not None  # guaranteed by validation
                t += policy.loop_delay
            else:
                t += level.delay
            notify.append(Step(t, index, loop, tuple(level.targets)))

    interval = policy.reminder_interval
    if interval is None:
        return notify
    steps: list[Step] = []
    for i, step in enumerate(notify):
        steps.append(step)
        stop = notify[i + 1].at if i + 1 < len(notify) else horizon
        if stop is None:
            continue
        last = i + 1 == len(notify)
        n = 1
        # Between levels: strictly before the next level; after the last: up to `until`.
        while (r := step.at + n * interval) < stop or (last and r == stop):
            steps.append(Step(r, step.level_index, step.loop, step.targets, "reminder", n))
            n += 1
    return steps


def _stop(acknowledged_at: datetime | None, resolved_at: datetime | None) -> datetime | None:
    given = (("acknowledged_at", acknowledged_at), ("resolved_at", resolved_at))
    ends = [_aware(value, name) for name, value in given if value is not None]
    return min(ends) if ends else None


def due_steps(
    policy: EscalationPolicy,
    triggered_at: datetime,
    now: datetime,
    acknowledged_at: datetime | None = None,
    resolved_at: datetime | None = None,
) -> list[Step]:
    """Steps due by ``now`` (inclusive); an ack or resolve cancels steps at or after it."""
    now = _aware(now, "now")
    stop = _stop(acknowledged_at, resolved_at)
    return [s for s in plan(policy, triggered_at, until=now) if s.at <= now and (stop is None or s.at < stop)]


def next_steps(
    policy: EscalationPolicy,
    triggered_at: datetime,
    after: datetime,
    acknowledged_at: datetime | None = None,
    resolved_at: datetime | None = None,
) -> list[Step]:
    """The steps at the earliest instant strictly after ``after`` ([] when none remain).

    This is what a durable timer arms next; it returns every step sharing that instant
    (levels with a zero delay fire together), so walking it never skips one.
    """
    after = _aware(after, "after")
    stop = _stop(acknowledged_at, resolved_at)
    horizon = after + (policy.reminder_interval or timedelta(0))
    upcoming = [s for s in plan(policy, triggered_at, until=horizon) if s.at > after]
    if not upcoming or (stop is not None and upcoming[0].at >= stop):
        return []
    return [s for s in upcoming if s.at == upcoming[0].at]


def resolve_targets(
    step: Step, schedules: Mapping[str, Schedule] | Iterable[Schedule], at: datetime | None = None
) -> ResolvedTargets:
    """Concrete users and channels for ``step`` at ``at`` (default: the step's own time)."""
    when = _aware(at, "at") if at is not None else step.at
    by_id = dict(schedules) if isinstance(schedules, Mapping) else {s.id: s for s in schedules}
    users: dict[str, None] = {}  # insertion-ordered set
    channels: dict[str, None] = {}
    uncovered: list[str] = []
    unknown: list[str] = []
    for target in step.targets:
        if target.user is not None:
            users.setdefault(target.user)
        elif target.channel is not None:
            channels.setdefault(target.channel)
        elif target.schedule is not None:
            schedule = by_id.get(target.schedule)
            if schedule is None:
                unknown.append(target.schedule)
                continue
            who = who_is_on_call(schedule, when).user
            if who is None:
                uncovered.append(target.schedule)
            else:
                users.setdefault(who)
    return ResolvedTargets(tuple(users), tuple(channels), tuple(uncovered), tuple(unknown))

