"""Delivery worker against real loopback HTTP receivers: signing, idempotency, 429 +
Retry-After, backoff → dead letter → re-drive, circuit breaker, concurrent workers."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest
from typer.testing import CliRunner

from alerting.channels import verify_signature
from alerting.delivery import backoff_delay
from alerting.notify import Worker, event_kind
from tests.alerting.channels.receivers import Reply
from tests.alerting.notify.conftest import (
    HOOK_KEY, apply_yaml, fast_settings, hook, q, raise_event, running_worker, wait_for,
)

pytestmark = pytest.mark.timescale


def _config(url, receiver, **route):
    extra = "".join(f"    {k}: {v}\n" for k, v in route.items())
    apply_yaml(url, "channels:\n" + hook("hook", receiver) + "routes:\n  - id: all\n    channels: [hook]\n" + extra)


def test_backoff_and_event_mapping_units():
    rng = random.Random(7)
    delays = [backoff_delay(n, 1.0, 10.0, rng) for n in (1, 2, 3, 4, 5, 6)]
    steps = [1, 2, 4, 8, 10, 10]
    for d, s in zip(delays, steps):
        assert s / 2 <= d <= s  # equal jitter: at least half the step, capped
    assert event_kind("transition", "pending", "firing") == "firing"
    assert event_kind("transition", "flapping", "firing") == "flapping_ended"
    assert event_kind("transition", None, "pending") is None
    assert event_kind("ack", "firing", "acknowledged") == "acknowledged"
    assert event_kind("comment", None, None) is None


def test_webhook_signed_with_idempotency_key_and_logged(db, receivers):
    r = receivers()
    _config(db, r)
    alert_id, event_id = raise_event(db)
    raise_event(db, to_state="pending", from_state=None)  # pending: nothing to say
    raise_event(db, notify=False)  # shadow/suppressed event: nothing either
    with Worker(db, worker_id="t", settings=fast_settings()) as w:
        stats = w.drain()
        assert stats.outbox == 3 and stats.sent == 1
        assert w.drain().outbox == 0  # processed once
    assert len(r.requests) == 1
    req = r.requests[0]
    assert verify_signature(req.body, dict(req.headers.items()), HOOK_KEY)
    assert not verify_signature(req.body, dict(req.headers.items()), "wrong-key")
    assert req.headers["X-Pulse-Idempotency-Key"] == f"{alert_id}:{event_id}:hook"
    body = json.loads(req.body)
    assert body["alert_id"] == alert_id and body["event"] == "firing"
    assert body["labels"]["tenant"] == "acme" and body["labels"]["site"] == "plant-a"
    assert body["labels"]["metric"] == "temp_c" and body["labels"]["state"] == "firing"
    [(status, attempts)] = q(db, "select status, attempts from deliveries")
    assert (status, attempts) == ("sent", 1)
    [(ok, code, latency)] = q(db, "select ok, status_code, latency_ms from delivery_attempts")
    assert ok and code == 200 and latency > 0


def test_429_retry_after_is_honoured(db, receivers):
    r = receivers()
    r.replies = [Reply(status=429, headers={"Retry-After": "1"})]
    _config(db, r)
    raise_event(db)
    # A backoff far longer than Retry-After: if the worker ignored the header the test
    # would time out instead of seeing the retry one second later.
    with running_worker(db, fast_settings(backoff_base_s=30, backoff_max_s=60)):
        wait_for(lambda: q(db, "select 1 from deliveries where status = 'sent'"), 8, what="retry after 429")
    rows = q(db, "select status_code, at, retry_after_s from delivery_attempts order by attempt_id")
    assert [row[0] for row in rows] == [429, 200]
    gap = (rows[1][1] - rows[0][1]).total_seconds()
    assert rows[0][2] == 1.0
    assert 0.95 <= gap < 3.0, gap
    assert len({r.headers["X-Pulse-Idempotency-Key"] for r in r.requests}) == 1  # same key on retry


def test_500_backs_off_dead_letters_and_redrives(db, receivers):
    r = receivers()
    r.default = Reply(status=500, body=b"boom")
    _config(db, r)
    raise_event(db)
    from alerting.notify_cli import deliveries_app

    with running_worker(db, fast_settings(max_attempts=3, backoff_base_s=0.3, backoff_max_s=5)):
        wait_for(lambda: q(db, "select 1 from deliveries where status = 'dead'"), 10, what="dead letter")
        times = [row[0] for row in q(db, "select at from delivery_attempts order by attempt_id")]
        assert len(times) == 3
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
        assert gaps[0] >= 0.15 and gaps[1] >= 0.3, gaps  # 0.3 then 0.6 s steps, at least half each
        listed = CliRunner().invoke(deliveries_app, ["list", "--status", "dead", "--json"])
        assert listed.exit_code == 0, listed.output
        [dead] = json.loads(listed.output)
        assert dead["attempts"] == 3 and dead["last_status_code"] == 500
        r.default = Reply(status=200)
        # The worker has nothing scheduled: only the re-drive's NOTIFY can wake it.
        result = CliRunner().invoke(deliveries_app, ["retry", str(dead["delivery_id"])])
        assert result.exit_code == 0 and "re-queued 1" in result.output
        wait_for(lambda: q(db, "select 1 from deliveries where status = 'sent'"), 5, what="re-driven send")
    assert len(r.requests) == 4
    assert q(db, "select count(*) from delivery_attempts")[0][0] == 4  # history kept
    again = CliRunner().invoke(deliveries_app, ["retry", str(dead["delivery_id"])])
    assert again.exit_code != 0 and "only dead or failed" in str(again.exception)


def test_circuit_breaker_opens_then_half_opens(db, receivers):
    r = receivers()
    r.default = Reply(status=503)
    _config(db, r)
    for _ in range(3):
        raise_event(db)
    settings = fast_settings(max_attempts=50, backoff_base_s=0.05, backoff_max_s=0.1, breaker_threshold=2,
                             breaker_cooldown_s=1.0)
    with running_worker(db, settings):
        wait_for(lambda: q(db, "select 1 from channel_state where open_until is not null"), 5, what="open")
        opened_hits = len(r.requests)
        time.sleep(0.6)  # retries are due every ~0.1 s, but the open breaker holds them
        assert len(r.requests) == opened_hits
        # After the cooldown exactly one probe goes out; it fails, so it re-opens.
        wait_for(lambda: q(db, "select 1 from channel_state where opened_count = 2"), 5, what="re-open")
        assert len(r.requests) == opened_hits + 1
        r.default = Reply(status=200)
        wait_for(lambda: q(db, "select count(*) from deliveries where status = 'sent'")[0][0] == 3, 5,
                 what="recovery after successful probe")
    [(failures, open_until)] = q(db, "select consecutive_failures, open_until from channel_state")
    assert failures == 0 and open_until is None


def test_two_workers_never_double_send(db, receivers):
    r = receivers()
    r.default = Reply(status=200, delay_s=0.01)
    _config(db, r)
    for _ in range(40):
        raise_event(db)
    settings = fast_settings(batch_size=3)
    workers = [Worker(db, worker_id=f"w{i}", settings=settings) for i in range(2)]
    barrier = threading.Barrier(2)

    def drain(w):
        barrier.wait()
        w.drain(max_cycles=1000)

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for w in workers:
        w.close()
    keys = [req.headers["X-Pulse-Idempotency-Key"] for req in r.requests]
    assert len(keys) == 40 and len(set(keys)) == 40
    assert q(db, "select count(*) from delivery_attempts")[0][0] == 40
    assert q(db, "select count(*) from notification_outbox where processed_at is null")[0][0] == 0
