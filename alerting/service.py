"""The live alert service: the engine attached to the ingest path and the database.

``AlertService(database_url)`` is an ingest listener (``IngestService(listeners=[svc])``):

* ``on_committed(records)`` only enqueues (the writer thread must never block);
* ONE evaluation thread owns the engines (one ``Engine`` per tenant: fleet rules need
  every member of a group in the same engine) and the store connection. It observes
  readings in timestamp order, then ``advance(wall_now - grace)`` so timers (``for``,
  ``keep_firing_for``, absence, ``resolve_after``) fire; it sleeps exactly until the
  earliest ``next_deadline()`` (+ grace), new work, or the next snapshot — no polling tick;
* transitions are written by ``alerting.store`` (event + outbox + pg_notify, one txn);
* a listener thread LISTENs on ``pulse_config`` (trigger from migration 0005 on
  ``config_objects`` and ``devices``: rule and fleet edits → ``update_rules`` /
  ``update_devices``, keeping the state of alerts still matched) and on
  ``pulse_alert_actions`` (operator ack/resolve written by ``alerting.api`` in any process
  → ``engine.acknowledge/resolve``). A cheap version check every ``config_check_s`` backs
  up LISTEN (a dropped connection loses notifications);
* snapshots (without window buffers) are saved per tenant every ``snapshot_interval_s``
  and on stop; on start they are restored, windows are rebuilt from TimescaleDB, readings
  committed after the snapshot are replayed (idempotent store), and operator actions
  taken while the service was down are applied.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import structlog
from prometheus_client import Counter, Gauge, Histogram

from alerting import store
from alerting.engine import Engine, Reading, Transition, to_us
from alerting.rules import CompositeCondition, FleetRule, WindowCondition, load_rules

log = structlog.get_logger("pulse.alerting")

EVALUATIONS = Counter("pulse_alert_evaluations_total", "Readings evaluated by the alert engine")
TRANSITIONS = Counter("pulse_alert_transitions_total", "Alert state transitions", ["to_state"])
NOTIFICATIONS = Counter("pulse_alert_outbox_rows_total", "Outbox rows written (notifications queued)")
SILENCED = Counter("pulse_alert_silenced_total", "Transitions recorded but not notified (silenced)")
EVAL_SECONDS = Histogram(
    "pulse_alert_evaluation_seconds", "Evaluate one batch of readings/timers and store its transitions",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LAG_SECONDS = Histogram(
    "pulse_alert_commit_to_store_seconds", "From ingest commit to the transitions being committed",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
QUEUE_DEPTH = Gauge("pulse_alert_queue_batches", "Committed batches waiting for the alert engine")
OPEN_ALERTS = Gauge("pulse_alert_open", "Open alerts (pending, firing, acknowledged, flapping)")

_STOP = object()


def _max_window_s(rules: Iterable[Any]) -> float:
    """Longest window any rule looks back over (what a restart must rebuild)."""
    def walk(cond: Any) -> float:
        if isinstance(cond, WindowCondition):
            return float(cond.window)
        if isinstance(cond, CompositeCondition):
            return max((walk(c) for c in cond.conditions), default=0.0)
        return 0.0

    best = 0.0
    for r in rules:
        best = max(best, walk(r.condition if isinstance(r, FleetRule) else r))
    return best


class AlertService:
    def __init__(self, database_url: str, *, grace_s: float = 0.2, snapshot_interval_s: float = 15.0,
                 config_check_s: float = 30.0, catchup_max_s: float = 86400.0):
        self.url = database_url
        self.grace_s = grace_s
        self.snapshot_interval_s = snapshot_interval_s
        self.config_check_s = config_check_s
        self.catchup_max_s = catchup_max_s
        self.engines: dict[str, Engine] = {}
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._conn: psycopg.Connection | None = None
        self._rule_defs: list[dict] = []
        self._devices: dict[str, list] = {}
        self._version: tuple | None = None
        self._eval_thread: threading.Thread | None = None
        self._listen_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.stats = {"readings": 0, "transitions": 0, "outbox": 0, "silenced": 0, "duplicates": 0}

    # ------------------------------------------------------------------ ingest listener API
    def start(self) -> None:
        self._conn = psycopg.connect(self.url)
        self._load_config(initial=True)
        self._listen_ready = threading.Event()
        self._listen_thread = threading.Thread(target=self._listen_loop, name="pulse-alert-listen", daemon=True)
        self._listen_thread.start()
        self._listen_ready.wait(10)
        self._eval_thread = threading.Thread(target=self._eval_loop, name="pulse-alert-engine", daemon=True)
        self._eval_thread.start()
        log.info("alert service started", tenants=len(self.engines), rules=len(self._rule_defs))

    def on_committed(self, records: list) -> None:
        """Called by the ingest writer after each commit: enqueue only, never block."""
        if records:
            self._q.put(("readings", records, time.monotonic()))
            QUEUE_DEPTH.inc()

    def stop(self) -> None:
        if self._eval_thread is None:
            return
        self._stopping.set()
        self._q.put(_STOP)
        self._eval_thread.join(30)
        if self._listen_thread is not None:
            self._listen_thread.join(5)
        if self._conn is not None:
            self._conn.close()
        self._eval_thread = None
        log.info("alert service stopped", **self.stats)

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` on the evaluation thread (the engines are not thread-safe)."""
        fut: Future = Future()
        self._q.put(("call", fn, fut))
        return fut.result(timeout)

    # ------------------------------------------------------------------ configuration
    def _load_config(self, initial: bool = False) -> list[Transition]:
        conn = self._conn
        assert conn is not None
        version = store.rules_version(conn)
        if not initial and version == self._version:
            conn.commit()
            return []
        defs = store.load_rule_definitions(conn)
        devices = store.load_devices(conn)
        conn.commit()
        try:
            load_rules(defs)
        except ValueError as exc:  # stored rules are validated on apply; never crash the loop
            log.error("stored rules are invalid; keeping the previous rules", error=str(exc))
            defs = self._rule_defs
        rules_changed = defs != self._rule_defs
        out: list[Transition] = []
        tenants = set(devices) | set(self.engines)
        for tenant in sorted(tenants):
            devs = devices.get(tenant, [])
            eng = self.engines.get(tenant)
            if eng is None:
                out += self._create_engine(tenant, defs, devs)
                continue
            if rules_changed:
                out += eng.update_rules(defs)
            if devs != self._devices.get(tenant, []):
                out += eng.update_devices(devs)
        self._rule_defs, self._devices, self._version = defs, devices, version
        if not initial:
            log.info("alert configuration reloaded", rules=len(defs), rules_changed=rules_changed,
                     transitions=len(out))
        else:
            self._store(out)
        return out

    def _has_rules(self, tenant: str) -> bool:
        """A rule without a tenant in its target applies to every tenant."""
        scope = {(d.get("target") or {}).get("tenant") for d in self._rule_defs}
        return None in scope or tenant in scope

    def _create_engine(self, tenant: str, defs: list[dict], devices: list) -> list[Transition]:
        conn = self._conn
        assert conn is not None
        snap = store.load_snapshot(conn, tenant)
        conn.commit()
        out: list[Transition] = []
        eng: Engine | None = None
        if snap is not None:
            try:
                eng = Engine.restore(snap, defs, devices)
                out += eng.restore_transitions
            except (ValueError, KeyError, TypeError) as exc:
                log.error("engine snapshot unusable; starting fresh", tenant=tenant, error=str(exc))
                eng = None
        if eng is None:
            eng = Engine(defs, devices)
        self.engines[tenant] = eng
        if snap is not None and eng.clock is not None:
            out += self._catch_up(tenant, eng, snap)
        out += self._reconcile(tenant, None)
        return out

    def _catch_up(self, tenant: str, eng: Engine, snap: dict) -> list[Transition]:
        """Rebuild windows from stored telemetry and replay readings the snapshot missed."""
        clock = eng.clock
        assert clock is not None
        lookback = timedelta(seconds=max(_max_window_s(eng.rules), 300.0))
        until = clock + timedelta(seconds=self.catchup_max_s)
        conn = self._conn
        assert conn is not None
        rows = conn.execute(
            """select device_id, time, metric, value from telemetry
               where tenant_id = %s and time > %s and time <= %s order by time, device_id""",
            (tenant, clock - lookback, until),
        ).fetchall()
        conn.commit()
        readings: dict[tuple[str, datetime], dict[str, float]] = {}
        for device, ts, metric, value in rows:
            readings.setdefault((device, ts), {})[metric] = value
        ordered = [Reading(tenant, d, ts, m) for (d, ts), m in readings.items()]
        eng.rebuild_windows(ordered)
        last_seen = {d["device_id"]: d["last_seen"] for d in snap.get("devices", [])}
        default = to_us(clock)
        out: list[Transition] = []
        replayed = 0
        for r in ordered:
            seen = last_seen.get(r.device_id)
            if to_us(r.ts) > (seen if seen is not None else default):
                out += eng.observe(r)
                replayed += 1
        log.info("engine restored", tenant=tenant, clock=clock.isoformat(), window_rows=len(rows), replayed=replayed)
        return out

    def _reconcile(self, tenant: str, alert_ids: list[str] | None) -> list[Transition]:
        """Apply operator actions recorded in the database (by ``alerting.api``) to the engine.

        The API already wrote the ack/resolve event and its notification, so the engine's
        mirror transitions are not stored again."""
        eng = self.engines.get(tenant)
        conn = self._conn
        if eng is None or conn is None:
            return []
        open_alerts = {a.alert_id: a for a in eng.alerts()}
        ids = [i for i in (alert_ids if alert_ids is not None else open_alerts) if i in open_alerts]
        if not ids:
            return []
        rows = conn.execute(
            """select alert_id, state, acknowledged_at, resolved_at from alerts
               where alert_id = any(%s) and (state = 'resolved' or acknowledged_at is not null)""",
            (ids,),
        ).fetchall()
        conn.commit()
        for alert_id, state, acked_at, resolved_at in rows:
            a = open_alerts[alert_id]
            if state == "resolved":
                eng.resolve(a.fingerprint, resolved_at or eng.clock or datetime.now(UTC))
            elif acked_at is not None and a.acknowledged_at is None:
                eng.acknowledge(a.fingerprint, acked_at)
        return []

    # ------------------------------------------------------------------ threads
    def _listen_loop(self) -> None:
        first = True
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute("listen pulse_config")
                    conn.execute("listen pulse_alert_actions")
                    if first:
                        self._listen_ready.set()
                        first = False
                    else:  # notifications may have been lost while disconnected
                        self._q.put(("config", None))
                        self._q.put(("resync", None))
                    while not self._stopping.is_set():
                        for n in conn.notifies(timeout=0.5):
                            self._q.put(("config" if n.channel == "pulse_config" else "action", n.payload))
            except psycopg.Error as exc:
                self._listen_ready.set()
                log.warning("alert listener disconnected; reconnecting", error=str(exc))
                self._stopping.wait(1.0)

    def _eval_loop(self) -> None:
        next_snapshot = time.monotonic() + self.snapshot_interval_s
        next_config = time.monotonic() + self.config_check_s
        while True:
            timeout = min(next_snapshot, next_config) - time.monotonic()
            wall_due = self._next_wall_deadline()
            if wall_due is not None:
                timeout = min(timeout, wall_due - time.time())
            items: list = []
            try:
                items.append(self._q.get(timeout=max(timeout, 0.0)))
                while True:
                    items.append(self._q.get_nowait())
            except queue.Empty:
                pass
            stopping = False
            readings: list = []
            enqueued: list[float] = []
            actions: list[str] = []
            config = False
            calls = []
            for it in items:
                if it is _STOP:
                    stopping = True
                elif it[0] == "readings":
                    QUEUE_DEPTH.dec()
                    readings.extend(it[1])
                    enqueued.append(it[2])
                elif it[0] == "action":
                    actions.append(it[1])
                elif it[0] in ("config", "resync"):
                    config = True
                    if it[0] == "resync":
                        actions.append("*")
                elif it[0] == "call":
                    calls.append(it)
            del items
            try:
                self._step(readings, actions, config, enqueued)
            except Exception:  # never let one bad batch kill the engine thread
                log.exception("alert evaluation failed")
            for _, fn, fut in calls:
                try:
                    fut.set_result(fn())
                except Exception as exc:  # noqa: BLE001 (handed to the caller)
                    fut.set_exception(exc)
            now = time.monotonic()
            if now >= next_config:
                next_config = now + self.config_check_s
                self._guard(lambda: self._store(self._load_config()))
            if stopping or now >= next_snapshot:
                next_snapshot = now + self.snapshot_interval_s
                self._guard(self.save_snapshots)
            if stopping:
                return

    def _guard(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except psycopg.OperationalError as exc:
            log.warning("database unavailable", error=str(exc))
            self._reconnect()
        except Exception:
            log.exception("alert service task failed")

    def _next_wall_deadline(self) -> float | None:
        due = [d for e in self.engines.values() if (d := e.next_deadline()) is not None]
        if not due:
            return None
        return min(due).timestamp() + self.grace_s

    def _step(self, records: list, actions: list[str], config: bool, enqueued: list[float]) -> None:
        started = time.perf_counter()
        out: list[Transition] = []
        if config:
            out += self._load_config()
        if records:
            by_tenant: dict[str, list[Reading]] = {}
            for rec in records:
                t = rec.telemetry
                by_tenant.setdefault(rec.tenant_id, []).append(Reading(rec.tenant_id, t.device_id, t.ts, t.metrics))
            for tenant, rs in by_tenant.items():
                if tenant not in self.engines and not self._has_rules(tenant):
                    continue  # no rule can target this tenant: nothing to evaluate, no engine to keep
                if tenant not in self.engines:
                    out += self._create_engine(tenant, self._rule_defs, store.load_devices(self._conn, tenant).get(tenant, []))
                eng = self.engines[tenant]
                rs.sort(key=lambda r: r.ts)  # a batch in event-time order, like a backtest
                for r in rs:
                    out += eng.observe(r)
            EVALUATIONS.inc(len(records))
            self.stats["readings"] += len(records)
        if actions:
            self._apply_actions(actions)
        horizon = datetime.now(UTC) - timedelta(seconds=self.grace_s)
        for eng in self.engines.values():
            out += eng.advance(horizon)
        self._store(out)
        if records or out:
            EVAL_SECONDS.observe(time.perf_counter() - started)
        if enqueued:
            now = time.monotonic()
            for t0 in enqueued:
                LAG_SECONDS.observe(now - t0)

    def _apply_actions(self, payloads: list[str]) -> None:
        by_tenant: dict[str, list[str] | None] = {}
        for p in payloads:
            if p == "*":
                for tenant in self.engines:
                    by_tenant[tenant] = None
                continue
            try:
                d = json.loads(p)
                tenant, alert_id = d["tenant_id"], d["alert_id"]
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring malformed alert action", payload=p)
                continue
            if tenant in by_tenant and by_tenant[tenant] is None:
                continue
            by_tenant.setdefault(tenant, []).append(alert_id)  # type: ignore[union-attr]
        for tenant, ids in by_tenant.items():
            self._reconcile(tenant, ids)

    def _store(self, transitions: list[Transition]) -> None:
        if not transitions:
            return
        delay = 0.1
        while True:
            try:
                res = store.record_transitions(self._conn, transitions)  # type: ignore[arg-type]
                break
            except psycopg.OperationalError as exc:
                # idempotent: retrying the whole batch cannot duplicate events or outbox rows
                if self._stopping.is_set() and delay > 2:
                    log.error("giving up storing transitions at shutdown", n=len(transitions), error=str(exc))
                    return
                log.warning("storing transitions failed; retrying", error=str(exc), delay=delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                self._reconnect()
        for t in transitions:
            TRANSITIONS.labels(t.to_state.value).inc()
        NOTIFICATIONS.inc(res.outbox)
        SILENCED.inc(res.silenced)
        self.stats["transitions"] += res.events
        self.stats["outbox"] += res.outbox
        self.stats["silenced"] += res.silenced
        self.stats["duplicates"] += res.duplicates

    def _reconnect(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
            self._conn = psycopg.connect(self.url)
        except psycopg.OperationalError:
            pass

    def save_snapshots(self) -> None:
        """Persist every engine (without window buffers: those are rebuilt from telemetry)."""
        conn = self._conn
        assert conn is not None
        now = datetime.now(UTC)
        n_open = 0
        for tenant, eng in self.engines.items():
            store.save_snapshot(conn, tenant, eng.snapshot(include_windows=False), now)
            alerts = eng.alerts()
            n_open += len(alerts)
            store.sync_open_alerts(conn, alerts)
        OPEN_ALERTS.set(n_open)
