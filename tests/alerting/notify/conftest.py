"""Fixtures for the delivery worker tests: a migrated database with the notify tables
emptied, config applied from YAML, alerts written the way the engine writes them, and
workers running in threads against real loopback receivers."""

from __future__ import annotations

import contextlib
import threading
import uuid
from datetime import datetime, timezone

import psycopg
import pytest
from psycopg.types.json import Jsonb

from alerting import config as alerting_config
from alerting.delivery import NotifySettings
from alerting.notify import Worker
from tests.alerting.channels.receivers import HttpReceiver

NOTIFY_TABLES = ["deliveries", "delivery_attempts", "escalations", "notification_groups", "channel_state"]
HOOK_KEY = "hook-signing-key-1"


@pytest.fixture
def db(pg_url, monkeypatch):
    """The test database with the notify tables emptied (tests/conftest.py does not know them)."""
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("truncate " + ", ".join(NOTIFY_TABLES) + " restart identity cascade")
    monkeypatch.setenv("PULSE_DATABASE_URL", pg_url)
    monkeypatch.setenv("T_HOOK_KEY", HOOK_KEY)
    monkeypatch.setenv("T_PD_KEY", "pd-routing-key-xyz")
    return pg_url


@pytest.fixture
def receivers():
    made: list[HttpReceiver] = []

    def make() -> HttpReceiver:
        r = HttpReceiver()
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def apply_yaml(url: str, text: str) -> None:
    cfg = alerting_config.loads(text)
    with psycopg.connect(url) as c:
        alerting_config.apply(c, cfg)


def hook(channel_id: str, receiver: HttpReceiver) -> str:
    return (f"  - id: {channel_id}\n    type: webhook\n    url: {receiver.url}/{channel_id}\n"
            f"    signing_keys: [{{env: T_HOOK_KEY}}]\n    timeout_s: 5\n")


def raise_event(url: str, alert_id: str | None = None, *, to_state: str = "firing", from_state: str | None = "pending",
                action: str = "transition", severity: str = "critical", site: str = "plant-a",
                device: str = "dev-1", rule: str = "temp-high", tenant: str = "acme", notify: bool = True,
                labels: dict | None = None) -> tuple[str, int]:
    """Write alert + alert_events + outbox in one transaction and pg_notify, as the engine does."""
    alert_id = alert_id or f"al-{uuid.uuid4().hex[:10]}"
    now = datetime.now(timezone.utc)
    with psycopg.connect(url) as c, c.transaction():
        c.execute(
            """insert into alerts (alert_id, fingerprint, tenant_id, rule_id, subject, device_id, site_id, severity,
                                   state, summary, value, labels, started_at, last_seen)
               values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               on conflict (alert_id) do update set state = excluded.state, last_seen = excluded.last_seen,
                   resolved_at = case when excluded.state = 'resolved' then now() end""",
            (alert_id, f"{tenant}/{rule}/{device}/{alert_id}", tenant, rule, device, device, site, severity,
             to_state, f"temperature high on {device}", 81.5, Jsonb(labels or {"metric": "temp_c"}), now, now),
        )
        event_id = c.execute(
            """insert into alert_events (alert_id, at, from_state, to_state, action, actor, reason, value, notify)
               values (%s, %s, %s, %s, %s, 'engine', 'temp_c 81.5 > 80', 81.5, %s) returning event_id""",
            (alert_id, now, from_state, to_state, action, notify),
        ).fetchone()[0]
        outbox_id = c.execute(
            "insert into notification_outbox (event_id, alert_id) values (%s, %s) returning outbox_id",
            (event_id, alert_id),
        ).fetchone()[0]
        c.execute("select pg_notify('pulse_outbox', %s)", (str(outbox_id),))
    return alert_id, event_id


def acknowledge(url: str, alert_id: str, by: str = "alice") -> None:
    """What the operator API does on ack: state + timestamp, and a wake-up for the workers."""
    with psycopg.connect(url) as c, c.transaction():
        c.execute("""update alerts set state = 'acknowledged', acknowledged_at = now(), acknowledged_by = %s
                     where alert_id = %s""", (by, alert_id))
        c.execute("select pg_notify('pulse_alert_actions', %s)", (alert_id,))


def fast_settings(**over) -> NotifySettings:
    base = dict(max_attempts=4, backoff_base_s=0.2, backoff_max_s=2.0, breaker_threshold=50,
                breaker_cooldown_s=1.0, batch_size=50, max_sleep_s=30.0)
    base.update(over)
    return NotifySettings(**base)


@contextlib.contextmanager
def running_worker(url: str, settings: NotifySettings | None = None, worker_id: str = "w1"):
    """A worker running its real event-driven loop in a thread."""
    worker = Worker(url, worker_id=worker_id, settings=settings or fast_settings())
    stop = threading.Event()
    errors: list[BaseException] = []

    def target():
        try:
            worker.run(stop)
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            errors.append(exc)

    t = threading.Thread(target=target, name=f"notify-{worker_id}", daemon=True)
    worker.listen()  # subscribe before the test writes anything
    t.start()
    try:
        yield worker
    finally:
        stop.set()
        t.join(10)
        worker.close()
    if errors:
        raise errors[0]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    from tests.helpers import wait_until

    return wait_until(predicate, timeout, interval, message=what)


def q(url: str, sql: str, params=()):
    with psycopg.connect(url) as c:
        return c.execute(sql, params).fetchall()
