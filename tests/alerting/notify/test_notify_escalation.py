"""Escalation policies on durable timers: levels after their delay, on-call lookup,
repeat loops, ack stops the timer at once, a restarted worker carries on from the DB."""

from __future__ import annotations

import json
import time

import pytest

from alerting.notify import Worker
from tests.alerting.notify.conftest import (
    acknowledge, apply_yaml, fast_settings, hook, q, raise_event, running_worker, wait_for,
)

pytestmark = pytest.mark.timescale


def _config(url, a, b, *, repeat: str = ""):
    apply_yaml(url, "users:\n  - id: alice\n    contact: [{channel: a}]\n  - id: bob\n    contact: [{channel: b}]\n"
               "channels:\n" + hook("a", a) + hook("b", b) + f"""schedules:
  - id: primary
    name: Primary
    time_zone: Europe/Berlin
    layers:
      - name: week
        users: [alice]
        rotation: 7d
        start: 2020-01-06T09:00:00
escalation_policies:
  - id: ops
    name: Ops
    levels:
      - targets: [{{schedule: primary}}]
      - delay: {"1s" if repeat else "2s"}
        targets: [{{user: bob}}]
{repeat}routes:
  - id: page
    escalation: ops
""")


def _levels(receiver):
    return [json.loads(r.body)["extra"]["escalation"] for r in receiver.requests]


def test_level_two_after_delay_survives_worker_restart(db, receivers):
    a, b = receivers(), receivers()
    _config(db, a, b)
    t0 = time.monotonic()
    alert_id, _ = raise_event(db)
    with Worker(db, worker_id="before-restart", settings=fast_settings()) as w:
        w.drain()
        assert [(x["level"], json.loads(a.requests[0].body)["extra"]["recipient"]) for x in _levels(a)] == [(1, "alice")]
        assert 1.0 < w.seconds_until_next() <= 2.1  # the durable timer for level 2
    assert len(b.requests) == 0
    # A new worker process knows nothing but the database.
    with running_worker(db, worker_id="after-restart"):
        wait_for(lambda: len(b.requests) == 1, 6, what="level 2")
        elapsed = time.monotonic() - t0
    assert 1.9 <= elapsed < 4.0, elapsed
    assert [x["level"] for x in _levels(b)] == [2]
    assert len(a.requests) == 1  # level 1 not repeated by the new worker
    [(level, reason, steps)] = q(db, "select level, stop_reason, steps_done from escalations where alert_id = %s",
                                 (alert_id,))
    assert (level, reason, steps) == (1, "completed", 2)
    [(key,)] = q(db, "select idempotency_key from deliveries where recipient = 'bob'")
    assert key == f"esc:{alert_id}:ops:0:1:notify:0:b:bob"


def test_ack_stops_escalation_at_once(db, receivers):
    a, b = receivers(), receivers()
    _config(db, a, b)
    with running_worker(db):
        t0 = time.monotonic()
        alert_id, _ = raise_event(db)
        wait_for(lambda: len(a.requests) == 1, 5, what="level 1")
        acknowledge(db, alert_id)
        # The ack's NOTIFY wakes the worker, which stops the timer well before level 2.
        wait_for(lambda: q(db, "select 1 from escalations where stop_reason = 'acknowledged'"), 1.5, what="stop")
        assert time.monotonic() - t0 < 1.9
        time.sleep(max(0.0, t0 + 2.6 - time.monotonic()))
    assert len(b.requests) == 0
    [(next_at,)] = q(db, "select next_at from escalations")
    assert next_at is None


def test_repeat_loops(db, receivers):
    a, b = receivers(), receivers()
    _config(db, a, b, repeat="    repeat: 1\n    loop_delay: 1s\n")
    with running_worker(db):
        raise_event(db)
        wait_for(lambda: len(b.requests) == 2, 6, what="second loop")
    assert [(x["loop"], x["level"]) for x in _levels(a)] == [(0, 1), (1, 1)]
    assert [(x["loop"], x["level"]) for x in _levels(b)] == [(0, 2), (1, 2)]
    times = sorted(r[0] for r in q(db, "select at from delivery_attempts"))
    span = (times[-1] - times[0]).total_seconds()
    assert 2.8 <= span < 4.5, span  # levels at t0, +1 s, +2 s (loop delay), +3 s
