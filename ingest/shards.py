"""Sharded MQTT ingest: a device's readings always reach the one worker that owns its shard.

Used by ``pulse ingest --shards N`` (design in docs/scaling.md, pure functions in
``pulse.sharding``). Three parts, each a real broker or database mechanism:

* **Router** (:class:`ShardRouter`): takes device telemetry from the shared subscription
  ``$share/{group}/pulse/v1/+/+/telemetry`` and republishes each message, QoS 1, to its
  shard topic ``{root}/{shard}/{tenant}/{device}/telemetry``. The device's message is
  acknowledged only when the broker has acknowledged the republished one, so a router
  crash loses nothing. On EMQX a rule does this in the broker (deploy/emqx/) and workers
  run with ``route=False``; Mosquitto has no rule engine, so Pulse routes.
* **Membership and fencing** (:class:`Membership`): each worker holds one PostgreSQL
  connection whose ``application_name`` is ``{prefix}:{worker_id}``; the live workers are
  read from ``pg_stat_activity``, so a worker killed with SIGKILL leaves the set as soon as
  the kernel closes its socket (no heartbeat timeout to wait out). A shard is owned under
  a session advisory lock on that connection: the lock is released by the same death, and
  a new owner can take a shard only once the old owner has let go or is gone.
* **Owner** (:class:`ShardCoordinator`): every ``interval_s`` it computes
  ``assign(live workers, shards)`` (rendezvous hashing: only a leaving worker's shards
  move). For a shard it gains it takes the lock, restores the shard's alert engines
  (snapshot, windows rebuilt from TimescaleDB, replay), then opens the shard's own
  persistent MQTT session (``shard_client_id``), inheriting its backlog and unacknowledged
  messages. For a shard it loses it stops taking messages, lets the writer commit and
  acknowledge what it took, snapshots the shard's engines and unlocks.

A shard topic with no session would drop messages, so on start a worker creates the
session of every shard whose lock is free (briefly locking it), before routing anything.

Router sessions are persistent, so a router that crashes keeps its in-flight messages.
But Mosquitto keeps allotting a share of new messages to a dead member of a shared
subscription, so a router must not simply vanish: a clean stop unsubscribes, routes what
is still in flight and ends its session; a crashed worker's router session is *adopted*
by a survivor (registered in ``ingest_workers``, locked so that only one adopter — or
the worker itself, restarting — holds it), which routes its backlog and ends it.
"""

from __future__ import annotations

import threading
import time
import zlib

import paho.mqtt.client as mqtt
import psycopg
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.mqtt import TELEMETRY_FILTER, MqttIngest, connect_session
from ingest.pipeline import Pipeline, parse_topic
from ingest.writer import BatchWriter
from pulse.errors import UserError
from pulse.settings import parse_mqtt_url
from pulse.sharding import assign, shard_client_id, shard_filter, shard_of, shard_topic

log = structlog.get_logger("pulse.ingest.shards")

LOCK_SPACE = 0x5055  # first key of the shard advisory locks ("PU"); the shard is the second
ROUTER_LOCK_SPACE = 0x5056  # first key of the router-session locks; crc32 of the worker id is the second


def _router_key(worker_id: str) -> int:
    x = zlib.crc32(worker_id.encode())
    return x - (1 << 32) if x >= 1 << 31 else x  # advisory lock keys are int4


class Membership:
    """Live workers and shard locks, on one dedicated PostgreSQL connection."""

    def __init__(self, database_url: str, worker_id: str, prefix: str):
        self.url = database_url
        self.worker_id = worker_id
        self.prefix = prefix
        self.app_name = f"{prefix}:{worker_id}"
        if len(self.app_name.encode()) > 63:  # PostgreSQL truncates application_name at 63 bytes
            raise UserError(f"worker id {worker_id!r} is too long for sharded ingest (max {62 - len(prefix)} bytes)")
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    def connect(self) -> None:
        self._conn = psycopg.connect(self.url, autocommit=True, application_name=self.app_name)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()  # releases every shard lock of this worker
                self._conn = None

    def live_workers(self) -> set[str]:
        with self._lock:
            assert self._conn is not None
            rows = self._conn.execute(
                """select distinct application_name from pg_stat_activity
                   where datname = current_database() and application_name like %s""",
                (self.prefix.replace("%", r"\%").replace("_", r"\_") + ":%",),
            ).fetchall()
        return {name.split(":", 1)[1] for (name,) in rows}

    def try_lock(self, shard: int, space: int = LOCK_SPACE) -> bool:
        with self._lock:
            assert self._conn is not None
            return bool(self._conn.execute("select pg_try_advisory_lock(%s, %s)", (space, shard)).fetchone()[0])

    def lock(self, key: int, space: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.try_lock(key, space):
            if time.monotonic() > deadline:
                raise UserError(f"worker {self.worker_id!r} is still locked (another process runs with this id, "
                                "or a survivor is adopting its router session)")
            time.sleep(0.2)

    def unlock(self, shard: int, space: int = LOCK_SPACE) -> None:
        with self._lock:
            assert self._conn is not None
            self._conn.execute("select pg_advisory_unlock(%s, %s)", (space, shard))

    def register(self, router_client_id: str) -> None:
        with self._lock:
            assert self._conn is not None
            self._conn.execute(
                """insert into ingest_workers (worker_id, router_client_id) values (%s, %s)
                   on conflict (worker_id) do update set router_client_id = excluded.router_client_id,
                       started_at = now(), stopped_at = null""", (self.worker_id, router_client_id))

    def mark_stopped(self, worker_id: str) -> None:
        with self._lock:
            assert self._conn is not None
            self._conn.execute("update ingest_workers set stopped_at = now() where worker_id = %s", (worker_id,))

    def crashed_routers(self, live: set[str]) -> list[tuple[str, str]]:
        """(worker id, router client id) of workers that neither run nor stopped cleanly."""
        with self._lock:
            assert self._conn is not None
            rows = self._conn.execute(
                "select worker_id, router_client_id from ingest_workers where stopped_at is null order by worker_id"
            ).fetchall()
        return [(w, c) for w, c in rows if w not in live]


def ensure_session(mqtt_url: str, client_id: str, topic_filter: str, session_expiry_s: int,
                   timeout: float = 10.0) -> None:
    """Create (or keep) a persistent session subscribed to ``topic_filter``, then leave it
    queueing: connect with ``clean_start=False``, subscribe, disconnect."""
    host, port = parse_mqtt_url(mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                         manual_ack=True)  # never acknowledge a queued message we do not process
    subscribed = threading.Event()
    client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda *_: None
    connect_session(client, host, port, session_expiry_s)
    try:
        if not subscribed.wait(timeout):
            raise RuntimeError(f"could not create the MQTT session {client_id}")
    finally:
        client.disconnect()
        client.loop_stop()


class ShardRouter:
    """Shared subscription on device topics → republish to shard topics, ack after the broker's PUBACK."""

    def __init__(self, mqtt_url: str, *, client_id: str, share_group: str, shards: int, root: str,
                 session_expiry_s: int):
        self.host, self.port = parse_mqtt_url(mqtt_url)
        self.shards = shards
        self.root = root
        self.session_expiry_s = session_expiry_s
        self.subscription = f"$share/{share_group}/{TELEMETRY_FILTER}"
        self.connected = threading.Event()
        self.routed = 0
        self._generation = 0
        self._pending: dict[int, tuple[int, int]] = {}  # republish mid → (device message mid, generation)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                                  manual_ack=True)
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_unsubscribe = lambda *_: self._unsubscribed.set()
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=5)
        self._unsubscribed = threading.Event()
        self._last_message = time.monotonic()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("router connect refused", reason=str(reason_code))
            return
        self._generation += 1
        self._pending.clear()  # unacked device messages of the old connection are redelivered
        client.subscribe(self.subscription, qos=1)
        self.connected.set()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage):
        self._last_message = time.monotonic()
        parts = parse_topic(msg.topic)
        if parts is None:  # cannot happen for this filter; let a worker quarantine it
            client.ack(msg.mid, msg.qos)
            return
        shard = shard_of(parts.tenant_id, parts.device_id, self.shards)
        # on_message runs on the network thread, so the PUBACK of the republish cannot be
        # processed before its mid is recorded here.
        info = client.publish(shard_topic(shard, parts.tenant_id, parts.device_id, self.root), msg.payload, qos=1)
        if msg.qos > 0:
            self._pending[info.mid] = (msg.mid, self._generation)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        entry = self._pending.pop(mid, None)
        if entry is not None and entry[1] == self._generation:
            client.ack(entry[0], 1)
            self.routed += 1

    def start(self) -> None:
        connect_session(self.client, self.host, self.port, self.session_expiry_s)

    def end(self, quiet_s: float = 0.5, timeout_s: float = 30.0) -> bool:
        """Leave the shared subscription without losing a message, and end the session:
        unsubscribe (no new messages are allotted to us after the UNSUBACK), keep routing
        what was already sent or queued to us until it has been quiet for ``quiet_s``, then
        disconnect with session expiry 0. False if it could not finish in ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        if self.connected.wait(max(deadline - time.monotonic(), 0)):
            self.client.unsubscribe(self.subscription)
            self._unsubscribed.wait(max(deadline - time.monotonic(), 0))
        while time.monotonic() < deadline and (
                self._pending or time.monotonic() - self._last_message < quiet_s or not self._unsubscribed.is_set()):
            time.sleep(0.02)
        clean = self._unsubscribed.is_set() and not self._pending
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = 0 if clean else self.session_expiry_s
        self.client.disconnect(properties=props)
        self.client.loop_stop()
        return clean


class ShardCoordinator:
    """Owns this worker's shards: membership, locks, the per-shard sessions and engines."""

    def __init__(self, database_url: str, mqtt_url: str, pipeline: Pipeline, writer: BatchWriter, *,
                 worker_id: str, shards: int, root: str, client_prefix: str, share_group: str,
                 session_expiry_s: int, alerts=None, route: bool = True, interval_s: float = 0.5):
        """``alerts``: the AlertService (``acquire_shard``/``release_shard``), or None."""
        self.mqtt_url = mqtt_url
        self.pipeline = pipeline
        self.writer = writer
        self.worker_id = worker_id
        self.shards = shards
        self.root = root
        self.client_prefix = client_prefix
        self.session_expiry_s = session_expiry_s
        self.alerts = alerts
        self.interval_s = interval_s
        self.share_group = share_group
        self.membership = Membership(database_url, worker_id, client_prefix)
        self.router_client_id = f"{client_prefix}-router-{worker_id}"
        self.router = self._router(self.router_client_id) if route else None
        self._adopting: set[str] = set()
        self.clients: dict[int, MqttIngest] = {}
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def owned(self) -> set[int]:
        return set(self.clients)

    def _router(self, client_id: str) -> ShardRouter:
        return ShardRouter(self.mqtt_url, client_id=client_id, share_group=self.share_group, shards=self.shards,
                           root=self.root, session_expiry_s=self.session_expiry_s)

    def start(self) -> None:
        self.membership.connect()
        if self.router is not None:
            # held for life: while a survivor still adopts our old router session, wait
            self.membership.lock(_router_key(self.worker_id), ROUTER_LOCK_SPACE, timeout_s=60)
            self.membership.register(self.router_client_id)
        self._ensure_sessions()
        self.rebalance()
        if self.router is not None:
            self.router.start()
            self.router.connected.wait(10)
        self.connected.set()
        self._thread = threading.Thread(target=self._loop, name="pulse-shards", daemon=True)
        self._thread.start()
        log.info("sharded ingest started", worker=self.worker_id, shards=sorted(self.clients))

    def _ensure_sessions(self) -> None:
        for shard in range(self.shards):
            if self.membership.try_lock(shard):  # free: nobody is connected to its session
                try:
                    ensure_session(self.mqtt_url, shard_client_id(shard, self.client_prefix),
                                   shard_filter(shard, self.root), self.session_expiry_s)
                finally:
                    self.membership.unlock(shard)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._adopt_crashed(self.rebalance())
            except psycopg.OperationalError as exc:
                # Our locks died with the connection: stop consuming everything, reconnect.
                log.warning("membership connection lost; releasing shards", error=str(exc))
                for shard in sorted(self.clients):
                    self._release(shard, unlock=False)
                try:
                    self.membership.connect()
                except psycopg.OperationalError:
                    pass
            except Exception:
                log.exception("shard rebalance failed")

    def rebalance(self) -> set[str]:
        """Take and give up shards to match ``assign(live workers)``; returns the live set."""
        live = self.membership.live_workers() | {self.worker_id}
        mine = set(assign(live, self.shards)[self.worker_id])
        for shard in sorted(set(self.clients) - mine):
            self._release(shard)
        for shard in sorted(mine - set(self.clients)):
            if self._stop.is_set():
                return live
            if self.membership.try_lock(shard):  # else its old owner has not let go yet
                self._acquire(shard)
        return live

    def _adopt_crashed(self, live: set[str]) -> None:
        if self.router is None:
            return  # the broker routes (EMQX): there are no router sessions
        for worker, client_id in self.membership.crashed_routers(live):
            if worker in self._adopting or not self.membership.try_lock(_router_key(worker), ROUTER_LOCK_SPACE):
                continue
            self._adopting.add(worker)
            threading.Thread(target=self._adopt, args=(worker, client_id), name=f"pulse-adopt-{worker}",
                             daemon=True).start()

    def _adopt(self, worker: str, client_id: str) -> None:
        """Route a crashed worker's router backlog and end its session, so the shared
        subscription stops allotting messages to it."""
        try:
            router = self._router(client_id)
            router.start()
            clean = router.end()
            if clean:
                self.membership.mark_stopped(worker)
            log.info("router session adopted", worker=self.worker_id, crashed=worker, routed=router.routed,
                     clean=clean)
        except Exception:
            log.exception("adopting a router session failed", crashed=worker)
        finally:
            try:
                self.membership.unlock(_router_key(worker), ROUTER_LOCK_SPACE)
            except psycopg.Error:
                pass
            self._adopting.discard(worker)

    def _acquire(self, shard: int) -> None:
        if self.alerts is not None:
            self.alerts.acquire_shard(shard)  # state first, then the shard's messages
        client = MqttIngest(self.mqtt_url, self.pipeline, self.writer,
                            client_id=shard_client_id(shard, self.client_prefix), share_group="",
                            topic_filter=shard_filter(shard, self.root), session_expiry_s=self.session_expiry_s)
        client.start()
        self.clients[shard] = client
        log.info("shard owned", worker=self.worker_id, shard=shard)

    def _release(self, shard: int, unlock: bool = True) -> None:
        client = self.clients.pop(shard)
        client.pause()
        self.writer.barrier()  # what the shard's client took is committed, evaluated-queued, acked
        if self.alerts is not None:
            self.alerts.release_shard(shard)
        client.stop()
        if unlock:
            self.membership.unlock(shard)
        log.info("shard released", worker=self.worker_id, shard=shard)

    def pause(self) -> None:
        """Stop taking messages (shutdown, step 1: the writer then commits and acks the rest)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.router is not None and self.router.end():
            self.membership.mark_stopped(self.worker_id)
        for client in self.clients.values():
            client.pause()

    def close(self) -> None:
        """Shutdown, last step (after the writer and the alert engines stopped)."""
        for client in self.clients.values():
            client.stop()
        self.clients.clear()
        self.connected.clear()
        self.membership.close()
