"""Durable escalation timers: one ``escalations`` row per (alert, policy).

``next_at`` is when the row next needs attention; the worker wakes for the earliest one.
At wake-up the alert row is read again: acknowledged or resolved stops the escalation
(whatever delivered that news), otherwise every step of the policy due since
``last_step_at`` becomes deliveries whose idempotency keys carry the step key, so a step
fires once even if two workers or a restart race over it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import structlog
from psycopg.rows import dict_row

from alerting.escalation import EscalationPolicy, Step, due_steps, next_steps, resolve_targets

log = structlog.get_logger("pulse.notify.escalation")
EPS = timedelta(microseconds=1)


def start(conn: psycopg.Connection, *, alert_id: str, policy: EscalationPolicy, route_id: str | None,
          event_id: int, triggered_at: datetime) -> bool:
    """Arm the policy for an alert (no-op when it already runs for that alert)."""
    first = next_steps(policy, triggered_at, triggered_at - EPS)
    row = conn.execute(
        """insert into escalations (alert_id, policy_id, route_id, event_id, triggered_at, next_at)
           values (%s, %s, %s, %s, %s, %s) on conflict (alert_id, policy_id) do nothing returning alert_id""",
        (alert_id, policy.id, route_id, event_id, triggered_at, first[0].at if first else None),
    ).fetchone()
    return row is not None


def stop(conn: psycopg.Connection, alert_id: str, reason: str) -> int:
    cur = conn.execute(
        """update escalations set stopped_at = now(), stop_reason = %s, next_at = null, updated_at = now()
           where alert_id = %s and stopped_at is null""",
        (reason, alert_id),
    )
    return cur.rowcount


def stop_acknowledged(conn: psycopg.Connection) -> int:
    """Stop every running escalation whose alert is acknowledged or resolved now, however that
    happened (operator API with or without an outbox event): run at the start of a cycle,
    so an ack's `pulse_alert_actions` notification stops the timer at once."""
    cur = conn.execute(
        """update escalations e set stopped_at = now(), next_at = null, updated_at = now(),
                  stop_reason = case when a.state = 'resolved' or a.resolved_at is not null then 'resolved'
                                     else 'acknowledged' end
           from alerts a
           where a.alert_id = e.alert_id and e.stopped_at is null
             and (a.state in ('acknowledged', 'resolved') or a.acknowledged_at is not null
                  or a.resolved_at is not null)"""
    )
    return cur.rowcount


def _stop_reason(alert: dict[str, Any]) -> str | None:
    if alert["state"] == "resolved" or alert["resolved_at"] is not None:
        return "resolved"
    if alert["state"] == "acknowledged" or alert["acknowledged_at"] is not None:
        return "acknowledged"
    return None


def _collapse(steps: list[Step]) -> list[Step]:
    """After downtime several reminders may be due at once: keep every level notification
    but only the latest reminder (one 'still firing' says it all)."""
    if not steps:
        return steps
    last = steps[-1]
    return [s for s in steps if s.kind == "notify" or s is last]


StepSink = Callable[[dict[str, Any], EscalationPolicy, Step, Any], int]


def process_due(conn: psycopg.Connection, policies: dict[str, EscalationPolicy], schedules: dict[str, Any],
                fire: StepSink, *, limit: int = 50) -> int:
    """Handle every due escalation (SKIP LOCKED, one transaction). ``fire(row, policy, step,
    targets)`` creates the deliveries of one step. Returns the number of steps fired."""
    fired = 0
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """select e.alert_id, e.policy_id, e.route_id, e.event_id as trigger_event_id, e.triggered_at, e.next_at,
                      e.last_step_at, now() as now, a.*
               from escalations e join alerts a using (alert_id)
               where e.stopped_at is null and e.next_at <= now()
               order by e.next_at limit %s for update of e skip locked""",
            (limit,),
        ).fetchall()
        for row in rows:
            now: datetime = row["now"].astimezone(timezone.utc)
            policy = policies.get(row["policy_id"])
            reason = "policy_removed" if policy is None else _stop_reason(row)
            if reason is not None:
                stop(conn, row["alert_id"], reason)
                log.info("escalation_stopped", alert_id=row["alert_id"], policy=row["policy_id"], reason=reason)
                continue
            assert policy is not None
            steps = due_steps(policy, row["triggered_at"], now)
            if row["last_step_at"] is not None:
                steps = [s for s in steps if s.at > row["last_step_at"]]
            last = row["last_step_at"]
            for step in _collapse(steps):
                targets = resolve_targets(step, schedules, at=now)
                for sched in targets.uncovered_schedules:
                    log.warning("escalation_nobody_on_call", alert_id=row["alert_id"], schedule=sched)
                for sched in targets.unknown_schedules:
                    log.warning("escalation_unknown_schedule", alert_id=row["alert_id"], schedule=sched)
                fire(row, policy, step, targets)
                fired += 1
                log.info("escalation_step", alert_id=row["alert_id"], policy=policy.id, level=step.level_index + 1,
                         loop=step.loop, kind=step.kind, users=list(targets.users), channels=list(targets.channels))
            if steps:
                last = max(s.at for s in steps)
                level, loop = steps[-1].level_index, steps[-1].loop
            else:
                level = loop = None
            after = last if last is not None else row["triggered_at"] - EPS
            upcoming = next_steps(policy, row["triggered_at"], after)
            cur.execute(
                """update escalations set last_step_at = %s, next_at = %s, steps_done = steps_done + %s,
                          level = coalesce(%s, level), loop = coalesce(%s, loop), updated_at = now(),
                          stopped_at = case when %s then now() end,
                          stop_reason = case when %s then 'completed' end
                   where alert_id = %s and policy_id = %s""",
                (last, upcoming[0].at if upcoming else None, len(_collapse(steps)), level, loop,
                 not upcoming, not upcoming, row["alert_id"], row["policy_id"]),
            )
    return fired


def status(conn: psycopg.Connection, alert_id: str | None = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select * from escalations where (%(a)s::text is null or alert_id = %(a)s) order by triggered_at",
            {"a": alert_id},
        ).fetchall()
