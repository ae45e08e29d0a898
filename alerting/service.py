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
* snapshots (without window buffers) are saved per tenant every ``snapshot_interval_s``,
  on stop, and when an engine is first created; each records ``received_through``, the
  commit time (``telemetry.received_at``) of the last batch evaluated. On start they are
  restored, windows are rebuilt from TimescaleDB, and the rows committed after
  ``received_through`` are replayed batch by batch in commit order, each batch sorted by
  time — exactly as the live path evaluates them (one committed batch at a time), so a
  replayed transition is the stored one (the store drops it as a duplicate) even when
  readings arrived out of timestamp order. Operator actions taken while the service was
  down are then applied;
* batch anomaly scores come back through the database: the scoring asset writes
  ``anomaly_scores`` plus one ``anomaly_score_batches`` row per (device, metric, hour) with
  the hour's peak calibrated score, and notifies ``pulse_anomaly_scores``. Each undelivered
  row of a device this service evaluates becomes a reading ``anomaly_score.<metric>`` =
  peak, stamped now (the score is news now; a reading older than the device's live data
  would be late and not evaluated), and is stamped delivered once its transitions are
  stored. Undelivered rows are picked up on start and on every config check.

Sharded mode (``AlertService(url, shards=N)``, docs/scaling.md): the ingest worker owns a
set of virtual shards (``ingest.sharding.shard_of``) and tells the service with
``acquire_shard`` / ``release_shard``. There is then one engine per (tenant, shard), keyed
``"{tenant}#{shard}"`` (also its snapshot's partition key), holding only that shard's
devices; readings of shards this worker does not own are not evaluated (their owner
evaluates them). Acquiring a shard restores its engines exactly as a restart does —
snapshot, windows rebuilt from TimescaleDB, replay of readings committed after the
snapshot — so a shard that moves from a dead worker loses no alert, and the store's one
open alert per fingerprint keeps a replayed transition from being recorded twice. Fleet
rules see one shard's members only in this mode.
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
from pulse.sharding import shard_of

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


def _rule_scope(defs: list[dict]) -> set[str | None]:
    return {(d.get("target") or {}).get("tenant") for d in defs}


class AlertService:
    def __init__(self, database_url: str, *, grace_s: float = 0.2, snapshot_interval_s: float = 15.0,
                 config_check_s: float = 30.0, catchup_max_s: float = 86400.0, shards: int | None = None):
        self.url = database_url
        self.shards = shards
        self.owned: set[int] = set()  # sharded mode: the shards this worker evaluates
        # commit time of the last batch evaluated (all engines have seen every batch up to it),
        # and per engine the newest batch its restore replayed
        self._through: datetime | None = None
        self._replayed_through: dict[str, datetime] = {}
        self.grace_s = grace_s
        self.snapshot_interval_s = snapshot_interval_s
        self.config_check_s = config_check_s
        self.catchup_max_s = catchup_max_s
        self.engines: dict[str, Engine] = {}
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._conn: psycopg.Connection | None = None
        self._rule_defs: list[dict] = []
        self._rule_scope: set[str | None] = set()  # tenants the rules target (None: every tenant)
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
        self._q.put(("scores", None))  # batches scored while the service was down
        self._eval_thread = threading.Thread(target=self._eval_loop, name="pulse-alert-engine", daemon=True)
        self._eval_thread.start()
        log.info("alert service started", tenants=len(self.engines), rules=len(self._rule_defs))

    def on_committed(self, records: list, received_at: datetime | None = None) -> None:
        """Called by the ingest writer after each commit (``received_at``: the batch's commit
        time, ``telemetry.received_at``): enqueue only, never block."""
        if records:
            self._q.put(("readings", records, time.monotonic(), received_at))
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
        before = self._partitions(self._devices)
        after = self._partitions(devices, defs)
        for key in sorted(set(after) | set(self.engines)):
            devs = after.get(key, [])
            eng = self.engines.get(key)
            if eng is None:
                out += self._create_engine(key, defs, devs)
                continue
            if rules_changed:
                out += eng.update_rules(defs)
            if devs != before.get(key, []):
                out += eng.update_devices(devs)
        self._rule_defs, self._devices, self._version = defs, devices, version
        self._rule_scope = _rule_scope(defs)
        if not initial:
            log.info("alert configuration reloaded", rules=len(defs), rules_changed=rules_changed,
                     transitions=len(out))
        else:
            self._store(out)
        return out

    # ------------------------------------------------------------------ partitions: tenant, or tenant#shard
    def _key(self, tenant: str, device: str) -> str | None:
        """The engine a device belongs to; None when another worker owns its shard."""
        if self.shards is None:
            return tenant
        shard = shard_of(tenant, device, self.shards)
        return f"{tenant}#{shard}" if shard in self.owned else None

    def _partitions(self, devices: dict[str, list], defs: list[dict] | None = None) -> dict[str, list]:
        """Devices by engine key, for the engines this worker holds: tenants that a rule (of
        ``defs``, default the current rules) can target, and in sharded mode only the owned
        shards. A tenant without rules needs no engine (and its readings no evaluation)."""
        out: dict[str, list] = {}
        for tenant, devs in devices.items():
            if not self._has_rules(tenant, defs):
                continue
            if self.shards is None:
                out[tenant] = list(devs)
                continue
            for d in devs:
                key = self._key(tenant, d.device_id)
                if key is not None:
                    out.setdefault(key, []).append(d)
        return out

    def _engines_of_tenant(self, tenant: str) -> list[str]:
        return [k for k in self.engines if k == tenant or k.startswith(tenant + "#")]

    def acquire_shard(self, shard: int) -> None:
        """Start evaluating ``shard``: restore its engines (snapshot, windows, replay) now,
        before its readings arrive. Runs on the evaluation thread."""
        def acquire() -> int:
            self.owned.add(shard)
            parts = self._partitions(self._devices)
            out: list[Transition] = []
            for key, devs in sorted(parts.items()):
                if key.endswith(f"#{shard}") and key not in self.engines:
                    out += self._create_engine(key, self._rule_defs, devs)
            self._store(out)
            return len(out)

        n = self.call(acquire, timeout=120)
        log.info("shard acquired", shard=shard, transitions=n)

    def release_shard(self, shard: int) -> None:
        """Stop evaluating ``shard``: snapshot its engines (for the next owner) and drop them.
        Readings committed before the call are evaluated first (the queue is FIFO)."""
        def release() -> None:
            self.owned.discard(shard)
            conn = self._conn
            assert conn is not None
            now = datetime.now(UTC)
            for key in [k for k in self.engines if k.endswith(f"#{shard}")]:
                eng = self.engines.pop(key)
                store.save_snapshot(conn, key, self._snapshot_of(key, eng), now)
                store.sync_open_alerts(conn, eng.alerts())
                self._replayed_through.pop(key, None)
            conn.commit()

        self.call(release, timeout=60)
        log.info("shard released", shard=shard)

    def _has_rules(self, tenant: str, defs: list[dict] | None = None) -> bool:
        """A rule without a tenant in its target applies to every tenant."""
        scope = self._rule_scope if defs is None else _rule_scope(defs)
        return None in scope or tenant in scope

    def _engine_for(self, key: str, tenant: str, out: list[Transition]) -> Engine | None:
        """The engine of ``key``, created (restored) on first use; None when no rule can
        target the tenant (nothing to evaluate, no engine to keep)."""
        eng = self.engines.get(key)
        if eng is None and self._has_rules(tenant):
            devs = self._partitions(store.load_devices(self._conn, tenant)).get(key, [])
            out += self._create_engine(key, self._rule_defs, devs)
            eng = self.engines[key]
        return eng

    def _create_engine(self, key: str, defs: list[dict], devices: list) -> list[Transition]:
        conn = self._conn
        assert conn is not None
        snap = store.load_snapshot(conn, key)
        conn.commit()
        out: list[Transition] = []
        eng: Engine | None = None
        through = None
        if snap is not None:
            snap = dict(snap)
            through = snap.pop("received_through", None)
            through = datetime.fromisoformat(through) if through else None
            try:
                eng = Engine.restore(snap, defs, devices)
                out += eng.restore_transitions
            except (ValueError, KeyError, TypeError) as exc:
                log.error("engine snapshot unusable; starting fresh", engine=key, error=str(exc))
                eng = None
        if eng is None:
            eng = Engine(defs, devices)
        self.engines[key] = eng
        device_ids = None if self.shards is None else [d.device_id for d in devices]
        if snap is not None and (through is not None or eng.clock is not None):
            out += self._catch_up(key, eng, snap, through, device_ids)
        else:
            # A baseline, so whoever restores this engine next (a restart, or the next owner
            # of its shard) replays everything committed from now on.
            base = {**eng.snapshot(include_windows=False),
                    "received_through": conn.execute("select now()").fetchone()[0].isoformat()}
            store.save_snapshot(conn, key, base, datetime.now(UTC))
            conn.commit()
        out += self._reconcile(key, None)
        return out

    def _catch_up(self, key: str, eng: Engine, snap: dict, through: datetime | None,
                  device_ids: list[str] | None) -> list[Transition]:
        """Rebuild windows from stored telemetry and replay the rows the snapshot missed."""
        lookback = timedelta(seconds=max(_max_window_s(eng.rules), 300.0))
        clock = eng.clock or through
        assert clock is not None
        conn = self._conn
        assert conn is not None
        tenant = key.split("#", 1)[0]
        rows = conn.execute(
            """select device_id, time, metric, value, received_at from telemetry
               where tenant_id = %s and time > %s and time <= %s
                 and (%s::text[] is null or device_id = any(%s::text[]))
               order by received_at, time, device_id""",
            (tenant, clock - lookback, clock + timedelta(seconds=self.catchup_max_s), device_ids, device_ids),
        ).fetchall()
        conn.commit()
        # one Reading per (batch, device, ts): the live path evaluates committed batches in order
        batches: dict[datetime, dict[tuple[str, datetime], dict[str, float]]] = {}
        for device, ts, metric, value, received in rows:
            batches.setdefault(received, {}).setdefault((device, ts), {})[metric] = value
        seen_before = [Reading(tenant, d, ts, m) for received, b in batches.items()
                       if through is None or received <= through for (d, ts), m in b.items()]
        eng.rebuild_windows(sorted(seen_before, key=lambda r: (r.ts, r.device_id)))
        out: list[Transition] = []
        replayed = 0
        if through is not None:
            for received, b in batches.items():  # commit order (the query's)
                if received <= through:
                    continue
                for (d, ts), m in sorted(b.items(), key=lambda kv: (kv[0][1], kv[0][0])):
                    out += eng.observe(Reading(tenant, d, ts, m))
                    replayed += 1
                self._replayed_through[key] = received
        else:  # a snapshot from before received_at existed: replay by the devices' last seen
            last_seen = {d["device_id"]: d["last_seen"] for d in snap.get("devices", [])}
            default = to_us(clock)
            for r in sorted(seen_before, key=lambda r: (r.ts, r.device_id)):
                seen = last_seen.get(r.device_id)
                if to_us(r.ts) > (seen if seen is not None else default):
                    out += eng.observe(r)
                    replayed += 1
        log.info("engine restored", engine=key, clock=clock.isoformat(), window_rows=len(rows), replayed=replayed)
        return out

    def _snapshot_of(self, key: str, eng: Engine) -> dict:
        through = max((t for t in (self._through, self._replayed_through.get(key)) if t is not None), default=None)
        snap = eng.snapshot(include_windows=False)
        if through is not None:
            snap["received_through"] = through.isoformat()
        return snap

    def _reconcile(self, key: str, alert_ids: list[str] | None) -> list[Transition]:
        """Apply operator actions recorded in the database (by ``alerting.api``) to the engine.

        The API already wrote the ack/resolve event and its notification, so the engine's
        mirror transitions are not stored again."""
        eng = self.engines.get(key)
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
                    conn.execute(f"listen {store.SCORES_CHANNEL}")
                    if first:
                        self._listen_ready.set()
                        first = False
                    else:  # notifications may have been lost while disconnected
                        self._q.put(("config", None))
                        self._q.put(("resync", None))
                    while not self._stopping.is_set():
                        for n in conn.notifies(timeout=0.5):
                            kind = {"pulse_config": "config", store.SCORES_CHANNEL: "scores"}.get(n.channel, "action")
                            self._q.put((kind, n.payload))
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
            scores = False
            batches: list[tuple[list, datetime | None]] = []
            enqueued: list[float] = []
            actions: list[str] = []
            config = False
            calls = []
            for it in items:
                if it is _STOP:
                    stopping = True
                elif it[0] == "readings":
                    QUEUE_DEPTH.dec()
                    batches.append((it[1], it[3]))
                    enqueued.append(it[2])
                elif it[0] == "scores":
                    scores = True
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
                self._step(batches, actions, config, enqueued)
                if scores or config:
                    self._deliver_scores()
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
                self._guard(self._deliver_scores)
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

    def _deliver_scores(self) -> None:
        """Feed undelivered batch anomaly scores (of devices this service evaluates) to the
        engines, store the transitions, then stamp the rows delivered."""
        conn = self._conn
        assert conn is not None
        pending = store.pending_score_batches(conn)
        conn.commit()
        now = datetime.now(UTC) - timedelta(seconds=self.grace_s)
        readings: dict[tuple[str, str, str], dict[str, float]] = {}
        ids: list[int] = []
        for batch_id, tenant, device, metric, peak in pending:
            key = self._key(tenant, device)
            if key is None:
                continue  # another worker owns the device's shard: left for it
            ids.append(batch_id)
            metrics = readings.setdefault((key, tenant, device), {})
            name = f"anomaly_score.{metric}"
            metrics[name] = max(peak, metrics.get(name, 0.0))
        out: list[Transition] = []
        for (key, tenant, device), metrics in sorted(readings.items()):
            eng = self._engine_for(key, tenant, out)
            if eng is None:
                continue
            ts = max(now, eng.clock or now)
            seen = eng.last_seen(tenant, device)
            if seen is not None and seen >= ts:
                ts = seen + timedelta(microseconds=1)
            out += eng.observe(Reading(tenant, device, ts, metrics))
        self._store(out)
        if ids:
            store.mark_score_batches_delivered(conn, ids)
            log.info("anomaly scores delivered", rows=len(ids), transitions=len(out))

    def _step(self, batches: list[tuple[list, datetime | None]], actions: list[str], config: bool,
              enqueued: list[float]) -> None:
        started = time.perf_counter()
        out: list[Transition] = []
        if config:
            out += self._load_config()
        for records, received_at in batches:  # one committed batch at a time, as a replay does
            out += self._evaluate_batch(records)
            if received_at is not None and (self._through is None or received_at > self._through):
                self._through = received_at
        if actions:
            self._apply_actions(actions)
        horizon = datetime.now(UTC) - timedelta(seconds=self.grace_s)
        for eng in self.engines.values():
            out += eng.advance(horizon)
        self._store(out)
        if batches or out:
            EVAL_SECONDS.observe(time.perf_counter() - started)
        if enqueued:
            now = time.monotonic()
            for t0 in enqueued:
                LAG_SECONDS.observe(now - t0)

    def _evaluate_batch(self, records: list) -> list[Transition]:
        out: list[Transition] = []
        if records:
            by_key: dict[str, list[Reading]] = {}
            scope = self._rule_scope
            every_tenant = None in scope
            for rec in records:
                if not every_tenant and rec.tenant_id not in scope:
                    continue  # no rule targets the tenant: no Reading, no shard hash
                t = rec.telemetry
                key = self._key(rec.tenant_id, t.device_id)
                if key is not None:  # None: another worker owns the device's shard
                    by_key.setdefault(key, []).append(Reading(rec.tenant_id, t.device_id, t.ts, t.metrics))
            for key, rs in by_key.items():
                eng = self._engine_for(key, rs[0].tenant_id, out)
                if eng is None:
                    continue
                rs.sort(key=lambda r: (r.ts, r.device_id))  # a batch in event-time order, like a replay
                for r in rs:
                    out += eng.observe(r)
            EVALUATIONS.inc(len(records))
            self.stats["readings"] += len(records)
        return out

    def _apply_actions(self, payloads: list[str]) -> None:
        by_key: dict[str, list[str] | None] = {}
        for p in payloads:
            if p == "*":
                for key in self.engines:
                    by_key[key] = None
                continue
            try:
                d = json.loads(p)
                tenant, alert_id = d["tenant_id"], d["alert_id"]
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring malformed alert action", payload=p)
                continue
            for key in self._engines_of_tenant(tenant):  # _reconcile skips ids an engine does not hold
                if not (key in by_key and by_key[key] is None):
                    by_key.setdefault(key, []).append(alert_id)  # type: ignore[union-attr]
        for key, ids in by_key.items():
            self._reconcile(key, ids)

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
        for key, eng in self.engines.items():
            store.save_snapshot(conn, key, self._snapshot_of(key, eng), now)
            alerts = eng.alerts()
            n_open += len(alerts)
            store.sync_open_alerts(conn, alerts)
        OPEN_ALERTS.set(n_open)
