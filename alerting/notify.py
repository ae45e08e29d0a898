"""The delivery worker (`pulse notify`): outbox → routing → grouping/escalation → channels.

One cycle (``Worker.run_once``):

1. claim unprocessed ``notification_outbox`` rows (``FOR UPDATE SKIP LOCKED``), turn each
   alert event into deliveries (direct route channels), group entries (grouped routes)
   and escalation timers (routes with a policy); ack/resolve stops escalations. The
   outbox row is marked processed in the same transaction, so an event is handled once.
2. fire due escalation steps and flush due groups (also SKIP LOCKED, also durable rows).
3. lease due deliveries and send them through their channels (concurrently), honouring
   each channel's circuit breaker; log every attempt; schedule retries (exponential
   backoff with jitter, or the receiver's Retry-After) or dead-letter.

Between cycles the worker sleeps until the earliest timer in the database (retry,
escalation step, group flush, delayed outbox row) or until a notification on
``pulse_outbox`` (engine), ``pulse_alert_actions`` (operator ack/resolve) or
``pulse_deliveries`` (re-drive) arrives — there is no polling tick. All state is in the
database, so several workers can run at once and a restarted worker carries on.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import psycopg
import structlog
from prometheus_client import Counter, Gauge, Histogram
from psycopg.rows import dict_row
from pydantic import ValidationError

from alerting import delivery as dl
from alerting import escalation_runner, grouping
from alerting.channels.base import SEVERITIES, Channel, DeliveryResult, Notification
from alerting.channels.registry import ChannelConfigError, channel_from_config, parse_channel_config
from alerting.config import User, load_objects
from alerting.escalation import EscalationPolicy
from alerting.oncall import Schedule
from alerting.routing import Route, select_routes

log = structlog.get_logger("pulse.notify")

LISTEN_CHANNELS = ("pulse_outbox", "pulse_alert_actions", "pulse_deliveries")

SENT = Counter("pulse_notify_sent", "Deliveries sent", ["channel", "type"])
FAILED = Counter("pulse_notify_failed", "Failed delivery attempts (will retry)", ["channel", "type"])
DEAD = Counter("pulse_notify_dead", "Deliveries dead-lettered", ["channel", "type"])
LATENCY = Histogram("pulse_notify_latency_seconds", "Delivery attempt latency", ["channel", "type"],
                    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
BREAKER_OPEN = Counter("pulse_notify_breaker_opened", "Circuit breaker openings", ["channel"])
OUTBOX = Counter("pulse_notify_outbox_processed", "Outbox rows processed")
LAG = Gauge("pulse_notify_outbox_lag_seconds", "Age of the oldest outbox row processed in the last cycle")


# ------------------------------------------------------------------ config snapshot


@dataclass
class Snapshot:
    """The applied config the worker needs, loaded from config_objects each cycle (a few
    rows), so `pulse config apply` takes effect without a restart."""

    routes: list[Route] = field(default_factory=list)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    policies: dict[str, EscalationPolicy] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    rule_names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: psycopg.Connection) -> "Snapshot":
        snap = cls()
        for kind, target, model in (("route", None, Route), ("user", "users", User),
                                    ("escalation_policy", "policies", EscalationPolicy),
                                    ("schedule", "schedules", Schedule)):
            for definition in load_objects(conn, kind):
                try:
                    obj = model.model_validate(definition)
                except ValidationError as exc:  # applied by an older version: skip, say so
                    log.error("config_object_invalid", kind=kind, id=definition.get("id"), error=str(exc)[:300])
                    continue
                if target is None:
                    snap.routes.append(obj)
                else:
                    getattr(snap, target)[obj.id] = obj
        for definition in load_objects(conn, "channel"):
            snap.channels[definition["id"]] = definition
        for definition in load_objects(conn, "rule"):
            snap.rule_names[definition["id"]] = definition.get("name") or definition["id"]
        return snap


# ------------------------------------------------------------------ event → notification


def event_kind(action: str, from_state: str | None, to_state: str | None) -> str | None:
    """The Notification event for an alert_events row (None: nothing to notify)."""
    if action == "ack":
        return "acknowledged"
    if action == "resolve":
        return "resolved"
    if action == "reminder":
        return "reminder"
    if action != "transition":
        return None
    if to_state == "firing":
        return "flapping_ended" if from_state == "flapping" else "firing"
    if to_state in ("flapping", "acknowledged", "resolved"):
        return to_state
    return None  # pending


def alert_labels(alert: dict[str, Any], device_tags: dict[str, Any] | None = None) -> dict[str, str]:
    """Labels routes match on: device tags < rule/alert labels < the built-in ones."""
    labels = {k: str(v) for k, v in (device_tags or {}).items()}
    labels.update({k: str(v) for k, v in (alert.get("labels") or {}).items()})
    builtin = {"tenant": alert["tenant_id"], "site": alert.get("site_id"), "severity": alert["severity"],
               "rule": alert["rule_id"], "state": alert["state"], "device": alert.get("device_id")}
    labels.update({k: str(v) for k, v in builtin.items() if v is not None})
    return labels


def _utc(t: datetime) -> datetime:
    return t.astimezone(timezone.utc)


def build_notification(alert: dict[str, Any], *, event_id: int | None, event: str, at: datetime,
                       key: str, labels: dict[str, str], rule_name: str, reason: str | None = None,
                       value: float | None = None, public_url: str | None = None,
                       summary: str | None = None, extra: dict[str, Any] | None = None) -> Notification:
    severity = alert["severity"] if alert["severity"] in SEVERITIES else "warning"
    return Notification(
        alert_id=alert["alert_id"],
        event_id=event_id or 0,
        event=event,  # type: ignore[arg-type]
        tenant_id=alert["tenant_id"],
        rule_id=alert["rule_id"],
        rule_name=rule_name,
        device_id=alert.get("device_id"),
        site_id=alert.get("site_id"),
        severity=severity,  # type: ignore[arg-type]
        summary=summary or alert.get("summary") or reason or f"{rule_name} is {alert['state']}",
        value=value if value is not None else alert.get("value"),
        labels=labels,
        started_at=_utc(alert["started_at"]),
        at=_utc(at),
        url=f"{public_url.rstrip('/')}/alerts/{alert['alert_id']}" if public_url else None,
        idempotency_key=key,
        extra={"count": alert.get("count"), "reason": reason, **(extra or {})},
    )


# ------------------------------------------------------------------ worker


@dataclass
class CycleStats:
    outbox: int = 0
    created: int = 0
    escalation_steps: int = 0
    groups_flushed: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0
    postponed: int = 0

    def add(self, other: "CycleStats") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def busy(self) -> bool:
        return any((self.outbox, self.created, self.escalation_steps, self.groups_flushed,
                    self.sent, self.failed, self.dead))


class Worker:
    """One delivery worker. ``run()`` until ``stop`` is set; ``drain()`` for `--once`."""

    def __init__(self, url: str | None = None, *, worker_id: str | None = None,
                 settings: dl.NotifySettings | None = None) -> None:
        from pulse import db

        self.url = url or db.database_url()
        self.settings = settings or dl.NotifySettings()
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.conn = psycopg.connect(self.url, autocommit=True)
        self._listen: psycopg.Connection | None = None
        self._loop = asyncio.new_event_loop()
        self._channels: dict[tuple[str, str, str | None], Channel] = {}
        self.snapshot = Snapshot()
        self.log = log.bind(worker=self.worker_id)

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        for c in (self._listen, self.conn):
            if c is not None and not c.closed:
                c.close()
        if not self._loop.is_closed():
            self._loop.close()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def listen(self) -> None:
        """LISTEN before the first scan, so nothing announced during a cycle is missed."""
        if self._listen is None:
            self._listen = psycopg.connect(self.url, autocommit=True)
            for name in LISTEN_CHANNELS:
                self._listen.execute(f"listen {name}")

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        self.listen()
        self.log.info("worker_started", settings={k: v for k, v in self.settings.model_dump().items()})
        while not stop.is_set():
            stats = self.drain(max_cycles=20)
            if stats.busy:
                self.log.info("cycle", **stats.__dict__)
            if stop.is_set():
                break
            self._sleep(self._seconds_until_next(), stop)
        self.log.info("worker_stopped")

    def _sleep(self, timeout: float, stop: threading.Event) -> None:
        # Wake on a notification or at the next timer. While a stop is pending, short
        # slices keep shutdown prompt (a stop flag cannot interrupt a blocking read).
        assert self._listen is not None
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            got = False
            for _ in self._listen.notifies(timeout=min(left, 0.5), stop_after=1):
                got = True
            if got:
                # Swallow the rest of a burst: one cycle handles them all.
                for _ in self._listen.notifies(timeout=0.0):
                    pass
                return

    def _seconds_until_next(self) -> float:
        row = self.conn.execute(
            """select extract(epoch from least(
                   (select min(available_at) from notification_outbox where processed_at is null),
                   (select min(next_at) from escalations where stopped_at is null),
                   (select min(next_flush_at) from notification_groups),
                   (select min(next_attempt_at) from deliveries where status in ('pending', 'failed'))
               ) - now())"""
        ).fetchone()
        if row[0] is None:
            return self.settings.max_sleep_s
        return min(self.settings.max_sleep_s, max(0.0, float(row[0])) + 0.01)

    def seconds_until_next(self) -> float | None:
        """Seconds until the earliest timer (None when nothing is scheduled)."""
        left = self._seconds_until_next()
        return None if left >= self.settings.max_sleep_s else left

    def drain(self, max_cycles: int = 100) -> CycleStats:
        """Cycles until nothing is due right now (future retries/timers are left for later)."""
        total = CycleStats()
        for _ in range(max_cycles):
            stats = self.run_once()
            total.add(stats)
            if not stats.busy:
                break
        return total

    # ---------------------------------------------------------------- one cycle

    def run_once(self) -> CycleStats:
        stats = CycleStats()
        self.snapshot = Snapshot.load(self.conn)
        if stopped := escalation_runner.stop_acknowledged(self.conn):
            self.log.info("escalations_stopped", count=stopped)
        while True:
            n, created = self._process_outbox()
            stats.outbox += n
            stats.created += created
            if n < self.settings.batch_size:
                break
        stats.escalation_steps += escalation_runner.process_due(
            self.conn, self.snapshot.policies, self.snapshot.schedules, self._fire_step,
            limit=self.settings.batch_size)
        stats.groups_flushed += grouping.flush_due(
            self.conn, {r.id: r for r in self.snapshot.routes}, self._deliver_group, limit=self.settings.batch_size)
        self._send_due(stats)
        return stats

    # ---------------------------------------------------------------- outbox

    def _process_outbox(self) -> tuple[int, int]:
        created = 0
        with self.conn.transaction(), self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                """select outbox_id, event_id, created_at from notification_outbox
                   where processed_at is null and available_at <= now()
                   order by outbox_id limit %s for update skip locked""",
                (self.settings.batch_size,),
            ).fetchall()
            if not rows:
                return 0, 0
            for row in rows:
                created += self._handle_event(cur, row["event_id"])
            cur.execute("update notification_outbox set processed_at = now() where outbox_id = any(%s)",
                        ([r["outbox_id"] for r in rows],))
            oldest = min(r["created_at"] for r in rows)
            LAG.set(max(0.0, (datetime.now(timezone.utc) - oldest).total_seconds()))
        OUTBOX.inc(len(rows))
        return len(rows), created

    def _handle_event(self, cur: psycopg.Cursor, event_id: int) -> int:
        row = cur.execute(
            """select e.event_id, e.action, e.from_state, e.to_state, e.at, e.reason, e.value as event_value,
                      e.notify, e.silenced, a.*, d.tags as device_tags
               from alert_events e join alerts a using (alert_id)
               left join devices d on d.tenant_id = a.tenant_id and d.device_id = a.device_id
               where e.event_id = %s""",
            (event_id,),
        ).fetchone()
        if row is None:
            return 0
        kind = event_kind(row["action"], row["from_state"], row["to_state"])
        if kind in ("acknowledged", "resolved"):
            # Whatever else happens to this event, the escalation ends here.
            if escalation_runner.stop(self.conn, row["alert_id"], kind):
                self.log.info("escalation_stopped", alert_id=row["alert_id"], reason=kind)
        if kind is None or not row["notify"] or row["silenced"] or row.get("shadow"):
            return 0
        labels = alert_labels(row, row["device_tags"])
        created = 0
        for route in select_routes(self.snapshot.routes, labels):
            if kind == "resolved" and not route.notify_on_resolve:
                continue
            if route.escalation and kind in ("firing", "flapping"):
                policy = self.snapshot.policies.get(route.escalation)
                if policy is not None and escalation_runner.start(
                        self.conn, alert_id=row["alert_id"], policy=policy, route_id=route.id,
                        event_id=row["event_id"], triggered_at=row["at"]):
                    self.log.info("escalation_started", alert_id=row["alert_id"], policy=policy.id, route=route.id)
            if not route.channels:
                continue
            if grouping.is_grouped(route):
                grouping.add_event(self.conn, route, labels, row["alert_id"], row["event_id"])
                continue
            for channel_id in route.channels:
                # One key per (alert event, channel): a channel reached by two routes gets it once.
                key = f"{row['alert_id']}:{row['event_id']}:{channel_id}"
                n = self._notification(row, kind=kind, key=key, labels=labels, event_id=row["event_id"],
                                       at=row["at"], extra={"route": route.id})
                if dl.create_delivery(self.conn, n, channel_id=channel_id, source="route", route_id=route.id):
                    created += 1
        return created

    def _notification(self, alert: dict[str, Any], *, kind: str, key: str, labels: dict[str, str],
                      event_id: int | None, at: datetime, extra: dict[str, Any] | None = None,
                      summary: str | None = None) -> Notification:
        return build_notification(
            alert, event_id=event_id, event=kind, at=at, key=key, labels=labels,
            rule_name=self.snapshot.rule_names.get(alert["rule_id"], alert["rule_id"]),
            reason=alert.get("reason"), value=alert.get("event_value"), public_url=self.settings.public_url,
            summary=summary, extra=extra)

    # ---------------------------------------------------------------- escalation + groups

    def _fire_step(self, row: dict[str, Any], policy: EscalationPolicy, step: Any, targets: Any) -> int:
        kind = "reminder" if step.kind == "reminder" else "firing"
        labels = alert_labels(row)
        now = row["now"]
        base = {"escalation": {"policy": policy.id, "level": step.level_index + 1, "loop": step.loop,
                               "step": step.key}}
        sends: list[tuple[str, str, str | None]] = []  # (channel, recipient user, address)
        for user_id in targets.users:
            user = self.snapshot.users.get(user_id)
            if user is None or not user.contact:
                self.log.warning("escalation_user_unreachable", alert_id=row["alert_id"], user=user_id)
                continue
            sends += [(m.channel, user_id, m.address) for m in user.contact]
        sends += [(c, "", None) for c in targets.channels]
        created = 0
        for channel_id, user_id, address in sends:
            key = f"esc:{row['alert_id']}:{policy.id}:{step.key}:{channel_id}:{user_id}"
            n = self._notification(row, kind=kind, key=key, labels=labels, event_id=row["trigger_event_id"],
                                   at=now, extra={**base, "recipient": user_id or None})
            if dl.create_delivery(self.conn, n, channel_id=channel_id, source="escalation",
                                  route_id=row["route_id"], policy_id=policy.id, step_key=step.key,
                                  recipient=user_id, address=address):
                created += 1
        return created

    def _deliver_group(self, route: Route, g: dict[str, Any], items: list[dict[str, Any]], mode: str,
                       flush_no: int) -> int:
        kinds = ["reminder" if mode == "repeat" else
                 (event_kind(i["action"], i["from_state"], i["to_state"]) or "firing") for i in items]
        event, summary = grouping.summarize(items, kinds)
        rep = next((i for i, k in zip(items, kinds) if k in grouping.FIRING_KINDS), items[0])
        labels = {**alert_labels(rep), **{k: v for k, v in g["group_labels"].items()}}
        extra = {"route": route.id, **grouping.group_extra(route, g, items, kinds)}
        created = 0
        for channel_id in route.channels:
            key = f"grp:{route.id}:{g['group_key']}:{flush_no}:{channel_id}"
            n = self._notification(rep, kind=event, key=key, labels=labels, event_id=rep["event_id"],
                                   at=rep["at"], extra=extra, summary=summary)
            if dl.create_delivery(self.conn, n, channel_id=channel_id, source="group", route_id=route.id):
                created += 1
        return created

    # ---------------------------------------------------------------- sending

    def _channel(self, channel_id: str, address: str | None) -> Channel:
        definition = self.snapshot.channels.get(channel_id)
        if definition is None:
            raise ChannelConfigError("?", [("channel", f"channel {channel_id!r} is not configured (any more)")])
        cache_key = (channel_id, repr(sorted(definition.items(), key=lambda kv: kv[0])), address)
        channel = self._channels.get(cache_key)
        if channel is None:
            settings = parse_channel_config({k: v for k, v in definition.items() if k not in ("id", "description")})
            if address and getattr(settings, "type", None) == "email":
                settings = settings.model_copy(update={"to": [address]})  # the user's own address
            channel = self._channels[cache_key] = channel_from_config(settings)
        return channel

    def _send_due(self, stats: CycleStats) -> None:
        while True:
            claimed = dl.claim_due(self.conn, self.worker_id, self.settings.batch_size, self._lease_s())
            if not claimed:
                return
            jobs: list[tuple[dl.Claimed, Channel | None, bool, DeliveryResult | None]] = []
            for c in claimed:
                try:
                    channel = self._channel(c.channel_id, c.address)
                except ChannelConfigError as exc:
                    jobs.append((c, None, False, DeliveryResult(ok=False, error=str(exc), permanent=True)))
                    continue
                state, until = dl.breaker_admit(self.conn, c.channel_id, self._lease_s())
                if state == "open":
                    dl.postpone(self.conn, c.delivery_id, until, "circuit open")
                    stats.postponed += 1
                    continue
                jobs.append((c, channel, state == "probe", None))
            results = self._loop.run_until_complete(self._attempt_all(jobs))
            for (c, channel, probe, _), result in zip(jobs, results):
                self._record(c, channel, probe, result, stats)
            if len(claimed) < self.settings.batch_size:
                return

    def _lease_s(self) -> float:
        return 120.0 + self.settings.lease_margin_s

    async def _attempt_all(self, jobs: list) -> list[DeliveryResult]:
        # Different channels (and receivers) in one batch are sent concurrently.
        return list(await asyncio.gather(*(self._attempt(ch, c, pre) for c, ch, _, pre in jobs)))

    async def _attempt(self, channel: Channel | None, c: dl.Claimed, pre: DeliveryResult | None) -> DeliveryResult:
        if pre is not None or channel is None:
            return pre or DeliveryResult(ok=False, error="no channel", permanent=True)
        try:
            n = c.notification()
        except (ValueError, TypeError) as exc:
            return DeliveryResult(ok=False, error=f"bad stored notification: {exc}", permanent=True)
        return await channel.send(n)

    def _record(self, c: dl.Claimed, channel: Channel | None, probe: bool, result: DeliveryResult,
                stats: CycleStats) -> None:
        ctype = channel.type if channel is not None else "?"
        out = dl.record_attempt(self.conn, c, result, self.settings, worker_id=self.worker_id, probe=probe)
        LATENCY.labels(c.channel_id, ctype).observe(result.latency_ms / 1000.0)
        fields = dict(delivery_id=c.delivery_id, alert_id=c.alert_id, channel=c.channel_id, type=ctype,
                      attempt=out.attempts, status_code=result.status_code, latency_ms=result.latency_ms)
        if out.status == "sent":
            SENT.labels(c.channel_id, ctype).inc()
            stats.sent += 1
            self.log.info("delivery_sent", skipped=result.skipped or None, **fields)
        elif out.status == "failed":
            FAILED.labels(c.channel_id, ctype).inc()
            stats.failed += 1
            self.log.warning("delivery_failed", error=result.error, next_attempt_at=str(out.next_attempt_at),
                             retry_after_s=result.retry_after_s, **fields)
        else:
            DEAD.labels(c.channel_id, ctype).inc()
            stats.dead += 1
            self.log.error("delivery_dead", error=result.error, permanent=result.permanent, **fields)
        if out.breaker_opened:
            BREAKER_OPEN.labels(c.channel_id).inc()
            self.log.warning("circuit_opened", channel=c.channel_id, cooldown_s=self.settings.breaker_cooldown_s)


def run_worker(url: str | None = None, *, worker_id: str | None = None, once: bool = False,
               settings: dl.NotifySettings | None = None, stop: threading.Event | None = None) -> CycleStats:
    """Entry point of `pulse notify`: run until stopped (or, with ``once``, drain and return)."""
    settings = settings or dl.NotifySettings()
    if settings.metrics_port and not once:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port)
    with Worker(url, worker_id=worker_id, settings=settings) as worker:
        if once:
            return worker.drain()
        worker.run(stop)
    return CycleStats()
