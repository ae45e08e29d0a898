"""The delivery log: deliveries and their attempts, backoff, circuit breaker, dead letter.

A delivery is one notification for one (alert event | group flush | escalation step,
channel, recipient), identified by an idempotency key that is unique in the table and sent
to the receiver on every attempt. Workers claim due deliveries with ``FOR UPDATE SKIP
LOCKED`` and take a lease (``next_attempt_at`` moves past the send, ``leased_by`` names
the worker) before sending outside the transaction: two workers never send the same
delivery at once, and a worker that dies mid-send leaves a lease that simply expires.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from alerting.channels.base import DeliveryResult, Notification

STATUSES = ("pending", "failed", "sent", "dead")


class NotifySettings(BaseSettings):
    """Delivery tuning from ``PULSE_NOTIFY_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="PULSE_NOTIFY_", extra="ignore")

    max_attempts: int = Field(default=8, ge=1, description="attempts before a delivery is dead-lettered")
    backoff_base_s: float = Field(default=2.0, gt=0, description="first retry delay (doubles per attempt)")
    backoff_max_s: float = Field(default=600.0, gt=0, description="retry delay cap")
    retry_after_max_s: float = Field(default=3600.0, gt=0, description="cap on a receiver's Retry-After")
    breaker_threshold: int = Field(default=5, ge=1, description="consecutive failures that open a channel's breaker")
    breaker_cooldown_s: float = Field(default=60.0, gt=0, description="open time before one half-open probe")
    lease_margin_s: float = Field(default=30.0, gt=0, description="lease beyond a channel's own timeout")
    batch_size: int = Field(default=50, ge=1, le=1000)
    max_sleep_s: float = Field(default=300.0, gt=0, description="safety wake-up when nothing is scheduled")
    public_url: str | None = Field(default=None, description="base URL of the UI; alerts link to {url}/alerts/{id}")
    metrics_port: int | None = Field(default=None, description="serve Prometheus metrics on this port")


def backoff_delay(attempts: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, so retries of many
    deliveries that failed together spread out but never retry sooner than half the step."""
    step = min(max_s, base_s * (2 ** max(0, attempts - 1)))
    r = (rng or random).random()
    return step / 2 + r * step / 2


# ------------------------------------------------------------------ notification (de)serialisation


def notification_payload(n: Notification) -> dict[str, Any]:
    data = n.to_json_dict()
    data.pop("version", None)
    return data


def notification_from_payload(data: dict[str, Any], *, idempotency_key: str | None = None) -> Notification:
    fields = dict(data)
    fields.pop("version", None)
    for key in ("started_at", "at"):
        if isinstance(fields.get(key), str):
            fields[key] = datetime.fromisoformat(fields[key])
    if idempotency_key is not None:
        fields["idempotency_key"] = idempotency_key
    return Notification(**fields)


# ------------------------------------------------------------------ creating deliveries


def create_delivery(
    conn: psycopg.Connection,
    n: Notification,
    *,
    channel_id: str,
    source: str,
    route_id: str | None = None,
    policy_id: str | None = None,
    step_key: str | None = None,
    recipient: str = "",
    address: str | None = None,
) -> int | None:
    """Insert a pending delivery; None when its idempotency key exists (already created)."""
    row = conn.execute(
        """insert into deliveries (idempotency_key, alert_id, event_id, source, route_id, policy_id, step_key,
                                   channel_id, recipient, address, event, payload)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           on conflict (idempotency_key) do nothing
           returning delivery_id""",
        (n.idempotency_key, n.alert_id, n.event_id or None, source, route_id, policy_id, step_key,
         channel_id, recipient, address, n.event, Jsonb(notification_payload(n))),
    ).fetchone()
    return row[0] if row else None


# ------------------------------------------------------------------ claiming and recording


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    idempotency_key: str
    alert_id: str
    channel_id: str
    address: str | None
    attempts: int
    payload: dict[str, Any]

    def notification(self) -> Notification:
        return notification_from_payload(self.payload, idempotency_key=self.idempotency_key)


def claim_due(conn: psycopg.Connection, worker_id: str, limit: int, lease_s: float) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries to this worker (one short transaction)."""
    with conn.transaction():
        rows = conn.execute(
            """with due as (
                   select delivery_id from deliveries
                   where status in ('pending', 'failed') and next_attempt_at <= now()
                   order by next_attempt_at, delivery_id
                   limit %s
                   for update skip locked)
               update deliveries d set next_attempt_at = now() + make_interval(secs => %s),
                      leased_by = %s, updated_at = now()
               from due where d.delivery_id = due.delivery_id
               returning d.delivery_id, d.idempotency_key, d.alert_id, d.channel_id, d.address, d.attempts,
                         d.payload""",
            (limit, lease_s, worker_id),
        ).fetchall()
    return [Claimed(*r) for r in sorted(rows)]


def postpone(conn: psycopg.Connection, delivery_id: int, until: datetime, reason: str) -> None:
    """Give a claimed delivery back without an attempt (e.g. its channel's breaker is open)."""
    conn.execute(
        """update deliveries set next_attempt_at = %s, leased_by = null, last_error = %s, updated_at = now()
           where delivery_id = %s""",
        (until, reason, delivery_id),
    )


@dataclass(frozen=True)
class Outcome:
    status: str  # sent | failed | dead
    attempts: int
    next_attempt_at: datetime | None
    breaker_opened: bool


def record_attempt(
    conn: psycopg.Connection,
    claimed: Claimed,
    result: DeliveryResult,
    settings: NotifySettings,
    *,
    worker_id: str,
    probe: bool = False,
    rng: random.Random | None = None,
) -> Outcome:
    """Log the attempt, move the delivery to sent/failed/dead and update the breaker."""
    with conn.transaction():
        attempts = claimed.attempts + 1
        conn.execute(
            """insert into delivery_attempts (delivery_id, attempt, channel_id, worker_id, ok, status_code,
                                              latency_ms, error, retry_after_s)
               values (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (claimed.delivery_id, attempts, claimed.channel_id, worker_id, result.ok, result.status_code,
             result.latency_ms, result.error, result.retry_after_s),
        )
        next_at: datetime | None = None
        if result.ok:
            status = "sent"
            conn.execute(
                """update deliveries set status = 'sent', attempts = %s, sent_at = now(), leased_by = null,
                          last_error = null, last_status_code = %s, updated_at = now()
                   where delivery_id = %s""",
                (attempts, result.status_code, claimed.delivery_id),
            )
        else:
            if result.permanent or attempts >= settings.max_attempts:
                status, delay = "dead", None
            else:
                status = "failed"
                if result.retry_after_s is not None:
                    # The receiver told us when: exactly that (bounded), no jitter.
                    delay = min(max(result.retry_after_s, 0.0), settings.retry_after_max_s)
                else:
                    delay = backoff_delay(attempts, settings.backoff_base_s, settings.backoff_max_s, rng)
            row = conn.execute(
                """update deliveries set status = %s, attempts = %s, leased_by = null, last_error = %s,
                          last_status_code = %s, updated_at = now(),
                          next_attempt_at = case when %s::float8 is null then next_attempt_at
                                                 else now() + make_interval(secs => %s::float8) end
                   where delivery_id = %s returning next_attempt_at""",
                (status, attempts, result.error, result.status_code, delay, delay, claimed.delivery_id),
            ).fetchone()
            next_at = row[0] if status == "failed" else None
        opened = _breaker_record(conn, claimed.channel_id, result, settings, probe=probe)
    return Outcome(status, attempts, next_at, opened)


# ------------------------------------------------------------------ circuit breaker


def _counts_against_channel(result: DeliveryResult) -> bool:
    # A 4xx says the request is wrong and a 429 is flow control (Retry-After covers it):
    # neither means the channel is down.
    return not result.ok and not result.permanent and result.status_code != 429


def breaker_admit(conn: psycopg.Connection, channel_id: str, probe_s: float) -> tuple[str, datetime | None]:
    """('closed', None) send normally; ('probe', None) this worker sends the single half-open
    probe; ('open', until) do not send before ``until``."""
    row = conn.execute(
        "select open_until, open_until <= now(), probe_until, now() from channel_state where channel_id = %s",
        (channel_id,),
    ).fetchone()
    if row is None or row[0] is None:
        return "closed", None
    open_until, elapsed, probe_until, now = row
    if not elapsed:
        return "open", open_until
    # Half-open: exactly one worker wins the probe; the others wait for its outcome.
    won = conn.execute(
        """update channel_state set probe_until = now() + make_interval(secs => %s), updated_at = now()
           where channel_id = %s and open_until <= now() and (probe_until is null or probe_until <= now())
           returning probe_until""",
        (probe_s, channel_id),
    ).fetchone()
    if won:
        return "probe", None
    return "open", probe_until or now + timedelta(seconds=1)


def _release_postponed(conn: psycopg.Connection, channel_id: str, *, to_open_until: bool) -> None:
    # Deliveries parked while the breaker was open follow the probe's verdict at once:
    # now when it closed, the new open_until when it re-opened.
    conn.execute(
        """update deliveries set updated_at = now(),
                  next_attempt_at = case when %(reopen)s
                      then coalesce((select open_until from channel_state where channel_id = %(c)s), now())
                      else now() end
           where channel_id = %(c)s and status in ('pending', 'failed') and leased_by is null
             and last_error = 'circuit open'""",
        {"c": channel_id, "reopen": to_open_until},
    )


def _breaker_record(conn: psycopg.Connection, channel_id: str, result: DeliveryResult, settings: NotifySettings,
                    *, probe: bool) -> bool:
    if probe and (result.ok or not _counts_against_channel(result)):
        _release_postponed(conn, channel_id, to_open_until=False)
    if result.ok:
        conn.execute(
            """insert into channel_state (channel_id, last_success_at) values (%s, now())
               on conflict (channel_id) do update set consecutive_failures = 0, open_until = null,
                   probe_until = null, last_success_at = now(), updated_at = now()""",
            (channel_id,),
        )
        return False
    if not _counts_against_channel(result):
        if probe:  # the probe got through to a live endpoint: close the breaker
            conn.execute(
                """update channel_state set consecutive_failures = 0, open_until = null, probe_until = null,
                          updated_at = now() where channel_id = %s""",
                (channel_id,),
            )
        return False
    row = conn.execute(
        """insert into channel_state (channel_id, consecutive_failures, last_failure_at) values (%s, 1, now())
           on conflict (channel_id) do update set consecutive_failures = channel_state.consecutive_failures + 1,
               last_failure_at = now(), updated_at = now()
           returning consecutive_failures, open_until""",
        (channel_id,),
    ).fetchone()
    failures, open_until = row
    # A failed half-open probe re-opens at once; a closed breaker opens at the threshold.
    if probe or (open_until is None and failures >= settings.breaker_threshold):
        conn.execute(
            """update channel_state set open_until = now() + make_interval(secs => %s), probe_until = null,
                      opened_count = opened_count + 1, updated_at = now() where channel_id = %s""",
            (settings.breaker_cooldown_s, channel_id),
        )
        _release_postponed(conn, channel_id, to_open_until=True)
        return True
    return False


def channel_states(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("select * from channel_state order by channel_id").fetchall()


# ------------------------------------------------------------------ operator views and re-drive


def list_deliveries(conn: psycopg.Connection, *, status: str | None = None, alert_id: str | None = None,
                    limit: int = 100) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """select delivery_id, alert_id, event_id, event, source, route_id, policy_id, step_key, channel_id,
                      recipient, status, attempts, next_attempt_at, last_status_code, last_error, idempotency_key,
                      created_at, updated_at, sent_at
               from deliveries
               where (%(status)s::text is null or status = %(status)s)
                 and (%(alert)s::text is null or alert_id = %(alert)s)
               order by delivery_id desc limit %(limit)s""",
            {"status": status, "alert": alert_id, "limit": limit},
        ).fetchall()


def attempts_of(conn: psycopg.Connection, delivery_id: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select * from delivery_attempts where delivery_id = %s order by attempt_id", (delivery_id,)
        ).fetchall()


def redrive(conn: psycopg.Connection, *, delivery_id: int | None = None, all_dead: bool = False) -> list[int]:
    """Put dead (or failed) deliveries back in the queue with a fresh attempt budget; the
    attempt history stays. Wakes the workers. Returns the ids re-queued."""
    if (delivery_id is None) == (not all_dead):
        raise ValueError("give a delivery id or all_dead, not both")
    with conn.transaction():
        if all_dead:
            rows = conn.execute(
                """update deliveries set status = 'pending', attempts = 0, next_attempt_at = now(),
                          leased_by = null, updated_at = now()
                   where status = 'dead' returning delivery_id"""
            ).fetchall()
        else:
            rows = conn.execute(
                """update deliveries set status = 'pending', attempts = 0, next_attempt_at = now(),
                          leased_by = null, updated_at = now()
                   where delivery_id = %s and status in ('dead', 'failed') returning delivery_id""",
                (delivery_id,),
            ).fetchall()
        if rows:
            conn.execute("select pg_notify('pulse_deliveries', 'redrive')")
    return sorted(r[0] for r in rows)
