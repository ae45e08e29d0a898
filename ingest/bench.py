"""`pulse bench ingest`: ingest throughput against a bare paho receive loop, measured in
the same run on the same broker and database.

Method: a backlog of N QoS-1 messages is queued at the broker for a persistent session
(the consumer is offline while it is published, so publishing speed does not matter),
then the consumer starts and drains it. The baseline consumer is a bare paho loop that
only counts; the ingest consumer is `pulse ingest`, timed from "connected" until every
row is committed in TimescaleDB. Each consumer runs in its own process. The shared
subscription run queues the backlog for two workers and drains it with both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psycopg

from pulse import db, envelope, registry
from pulse.errors import UserError
from pulse.settings import get_settings, parse_mqtt_url

DEVICES = 1000
ALERTS = os.environ.get("PULSE_BENCH_ALERTS", "1") != "0"  # run the alert engine in the ingest workers
METRICS = ("temp_c", "pressure_bar", "flow_lpm", "vibration_mm_s", "power_kw")


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _tree_rss_mb(pid: int) -> float:
    """RSS of an ingest process and its children (the MQTT receive process)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return _rss_mb(pid) + sum(_rss_mb(int(c)) for c in children)


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _payloads(tenant: str, n: int, start_seq: int, base: datetime):
    for k in range(start_seq, start_seq + n):
        dev = f"b{k % DEVICES:04d}"
        ts = base + timedelta(milliseconds=k)
        metrics = {m: round(20.0 + (k % 97) * 0.1 + i, 3) for i, m in enumerate(METRICS)}
        yield f"pulse/v1/{tenant}/{dev}/telemetry", envelope.encode(dev, ts, metrics, seq=k)


def _connect_session(url: str, client_id: str, subscription: str) -> None:
    """Create a persistent session with the subscription, then leave (the backlog queues)."""
    host, port = parse_mqtt_url(url)
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_subscribe = lambda *a: done.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.on_connect = lambda c, *a: c.subscribe(subscription, qos=1)
    client.connect(host, port, clean_start=True, properties=props)
    client.loop_start()
    if not done.wait(10):
        raise UserError("could not subscribe on the broker")
    client.disconnect()
    client.loop_stop()


def _publish(url: str, items) -> int:
    host, port = parse_mqtt_url(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}",
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(2000)
    client.connect(host, port)
    client.loop_start()
    infos = []
    for topic, body in items:
        # packet ids are 16-bit: keep well under 65,535 unacknowledged messages in flight
        if len(infos) >= 20_000:
            infos[-20_000].wait_for_publish(60)
        infos.append(client.publish(topic, body, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    return sum(1 for i in infos if i.is_published())


BARE_LOOP = r"""
import sys, time, threading
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
host, port, client_id, sub, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
state = {"count": 0, "t0": None, "t1": None}
done = threading.Event()
def on_connect(c, u, f, rc, p):
    state["t0"] = time.perf_counter()
    c.subscribe(sub, qos=1)
def on_message(c, u, msg):
    state["count"] += 1
    if state["count"] >= n:
        state["t1"] = time.perf_counter(); done.set()
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
c.on_connect = on_connect; c.on_message = on_message
props = Properties(PacketTypes.CONNECT); props.SessionExpiryInterval = 0; props.ReceiveMaximum = 10000
c.connect(host, port, clean_start=False, properties=props)
c.loop_start()
done.wait(300)
c.disconnect(); c.loop_stop()
print(state["count"], (state["t1"] or time.perf_counter()) - state["t0"])
"""


def bare_paho_rate(url: str, n: int) -> dict:
    """The baseline: a bare paho loop draining a backlog of n messages (counts only)."""
    host, port = parse_mqtt_url(url)
    tenant = f"bare{uuid.uuid4().hex[:6]}"
    client_id = f"bench-bare-{tenant}"
    sub = f"pulse/v1/{tenant}/+/telemetry"
    _connect_session(url, client_id, sub)
    _publish(url, _payloads(tenant, n, 0, datetime.now(UTC) - timedelta(days=1)))
    out = subprocess.run([sys.executable, "-c", BARE_LOOP, host, str(port), client_id, sub, str(n)],
                         capture_output=True, text=True, timeout=600)
    received, seconds = out.stdout.split()
    return {"received": int(received), "seconds": float(seconds), "msgs_per_s": int(received) / float(seconds)}


def _setup_tenant(url: str, tenant: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        registry.upsert_tenant(conn, tenant, "Benchmark")
        tokens = {}
        with conn.transaction():
            for i in range(DEVICES):
                registry.upsert_device(conn, registry.Device(tenant, f"b{i:04d}", device_type="bench"))
                tokens[f"b{i:04d}"] = registry.rotate_token(conn, tenant, f"b{i:04d}").token
    return tokens


def _rows(url: str, tenant: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("select coalesce(sum(rows), 0)::bigint from device_state where tenant_id = %s",
                            (tenant,)).fetchone()[0]


def _stored(url: str, tenant: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        total, distinct = conn.execute(
            "select count(*), count(distinct (device_id, metric, time)) from telemetry where tenant_id = %s",
            (tenant,)).fetchone()
    return total, distinct


def _start_ingest(db_url: str, mqtt_url: str, worker: str, group: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "PULSE_DATABASE_URL": db_url, "PULSE_MQTT_SHARE_GROUP": group,
           "PULSE_MQTT_SESSION_EXPIRY_S": "3600"}
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{worker}-", suffix=".log", delete=False)
    args = [sys.executable, "-m", "pulse.cli", "ingest", "--worker-id", worker, "--mqtt", mqtt_url,
            "--http-port", str(port)]
    if not ALERTS:
        args.append("--no-alerts")
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_connected(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json().get("mqtt_connected"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.01)
    raise RuntimeError("ingest did not connect")


def ingest_drain(db_url: str, mqtt_url: str, n: int, workers: int) -> dict:
    """`workers` ingest processes drain a backlog of n messages into TimescaleDB."""
    tenant = f"bench{uuid.uuid4().hex[:6]}"
    _setup_tenant(db_url, tenant)
    group = f"bench-{tenant}"
    ids = [f"{tenant}-w{i}" for i in range(workers)]
    for worker in ids:
        _connect_session(mqtt_url, f"pulse-ingest-{worker}", f"$share/{group}/pulse/v1/+/+/telemetry")
    published = _publish(mqtt_url, _payloads(tenant, n, 0, datetime.now(UTC) - timedelta(days=1)))
    ports = [_free_port() for _ in ids]
    procs = [_start_ingest(db_url, mqtt_url, w, group, p) for w, p in zip(ids, ports)]
    rss_max = 0.0
    try:
        for port in ports:
            _wait_connected(port)
        started = time.perf_counter()
        cpu_before = _cpu_ticks()
        expected = n * len(METRICS)
        deadline = started + 600
        while time.perf_counter() < deadline:
            rss_max = max(rss_max, *(_tree_rss_mb(p.pid) for p in procs))
            if _rows(db_url, tenant) >= expected:
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        cpu_after = _cpu_ticks()
        time.sleep(0.5)  # late redeliveries would show up as extra rows now
        total, distinct = _stored(db_url, tenant)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        from ingest.mqtt import drop_session

        for worker in ids:
            drop_session(mqtt_url, f"pulse-ingest-{worker}")
    return {"workers": workers, "messages": n, "published": published, "seconds": seconds,
            "envelopes_per_s": n / seconds, "rows_per_s": distinct / seconds,
            "lost": expected - distinct, "duplicates": total - distinct, "rss_mb_max": round(rss_max, 1),
            # share of the machine's CPU busy during the drain (all processes): near 1.0 means
            # the run was bound by the cores, not by one process
            "machine_cpu_busy": round((cpu_after[0] - cpu_before[0]) / max(cpu_after[1] - cpu_before[1], 1), 3)}


def http_rate(db_url: str, envelopes: int, batch: int = 500, concurrency: int = 4) -> dict:
    tenant = f"benchh{uuid.uuid4().hex[:6]}"
    tokens = _setup_tenant(db_url, tenant)
    port = _free_port()
    env = {**os.environ, "PULSE_DATABASE_URL": db_url}
    log = tempfile.NamedTemporaryFile(prefix="bench-http-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "pulse.cli", "ingest", "--mqtt", "off", "--http-port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = datetime.now(UTC) - timedelta(days=1)
    devices = sorted(tokens)
    bodies = []
    per_device = envelopes // batch
    for b in range(per_device):
        dev = devices[b % len(devices)]
        lines = [envelope.encode(dev, base + timedelta(milliseconds=b * batch + i),
                                 {m: float(i + j) for j, m in enumerate(METRICS)}) for i in range(batch)]
        bodies.append((tokens[dev], b"\n".join(lines)))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        statuses: list[int] = []
        lock = threading.Lock()
        queue = list(bodies)

        def worker():
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                while True:
                    with lock:
                        if not queue:
                            return
                        token, body = queue.pop()
                    r = client.post("/v1/telemetry", content=body, headers={
                        "Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})
                    with lock:
                        statuses.append(r.status_code)

        started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        rows = _rows(db_url, tenant)
    finally:
        proc.terminate()
        proc.wait(30)
    return {"envelopes": len(bodies) * batch, "batch": batch, "concurrency": concurrency, "seconds": seconds,
            "rows_per_s": rows / seconds, "envelopes_per_s": len(bodies) * batch / seconds,
            "status_202": statuses.count(202), "status_other": len(statuses) - statuses.count(202)}


def soak(db_url: str, mqtt_url: str, seconds: float, rate: float = 3000.0) -> dict:
    """Steady MQTT load for `seconds`; RSS of the ingest process sampled every second."""
    tenant = f"soak{uuid.uuid4().hex[:6]}"
    _setup_tenant(db_url, tenant)
    group, worker, port = f"soak-{tenant}", f"{tenant}-w0", _free_port()
    proc = _start_ingest(db_url, mqtt_url, worker, group, port)
    samples: list[float] = []
    try:
        _wait_connected(port)
        host, mport = parse_mqtt_url(mqtt_url)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"soak-pub-{tenant}", protocol=mqtt.MQTTv5)
        client.max_inflight_messages_set(2000)
        client.connect(host, mport)
        client.loop_start()
        started = time.perf_counter()
        next_sample = started
        k = 0
        gen = _payloads(tenant, 10**9, 0, datetime.now(UTC) - timedelta(days=2))
        while (now := time.perf_counter()) - started < seconds:
            target = int((now - started) * rate)
            while k < target:
                topic, body = next(gen)
                client.publish(topic, body, qos=1)
                k += 1
            if now >= next_sample:
                samples.append(_tree_rss_mb(proc.pid))
                next_sample += 1.0
            time.sleep(0.005)
        client.disconnect()
        client.loop_stop()
        # whatever the worker has not taken yet waits at the broker: let it drain (bounded)
        drain_started = time.perf_counter()
        while _rows(db_url, tenant) < k * len(METRICS) and time.perf_counter() - drain_started < 180:
            time.sleep(0.2)
        drain_s = time.perf_counter() - drain_started
        stored = _rows(db_url, tenant) // len(METRICS)
    finally:
        proc.terminate()
        proc.wait(30)
        from ingest.mqtt import drop_session

        drop_session(mqtt_url, f"pulse-ingest-{worker}")
    warm = samples[min(len(samples) - 1, max(5, len(samples) // 10))] if samples else 0.0
    tail = max(samples[-max(1, len(samples) // 10):]) if samples else 0.0
    return {"seconds": seconds, "rate": rate, "published": k, "stored": stored, "drain_after_s": round(drain_s, 1),
            "rss_mb_after_warmup": round(warm, 1), "rss_mb_end": round(tail, 1),
            "rss_growth_pct": round(100.0 * (tail - warm) / warm, 2) if warm else None}


def run_all(*, messages: int, workers: int, http_envelopes: int, soak_s: float, soak_rate: float = 2000.0,
            skip: tuple[str, ...] = ()) -> dict:
    settings = get_settings()
    if not settings.database_url or not settings.mqtt_url:
        raise UserError("set PULSE_DATABASE_URL (TimescaleDB) and PULSE_MQTT_URL for the ingest benchmark "
                        "(`make bench` sets both to the services of scripts/services.sh)")
    db_url, mqtt_url = settings.database_url, settings.mqtt_url
    db.migrate(db_url)
    if "mqtt" in skip:  # only the HTTP and soak parts
        http = http_rate(db_url, http_envelopes) if http_envelopes else None
        return {"http": http, "soak": soak(db_url, mqtt_url, soak_s, soak_rate) if soak_s > 0 else None}
    baseline = bare_paho_rate(mqtt_url, messages)
    one = ingest_drain(db_url, mqtt_url, messages, 1)
    many = ingest_drain(db_url, mqtt_url, messages, workers) if workers > 1 else None
    http = http_rate(db_url, http_envelopes) if http_envelopes else None
    soak_result = soak(db_url, mqtt_url, soak_s, soak_rate) if soak_s > 0 else None
    result = {
        "envelopes_per_s": round(one["envelopes_per_s"]),
        "rows_per_s": round(one["rows_per_s"]),
        "baseline_paho_msgs_per_s": round(baseline["msgs_per_s"]),
        "ratio": round(one["envelopes_per_s"] / baseline["msgs_per_s"], 3),
        "lost": one["lost"],
        "duplicates": one["duplicates"],
        "rss_mb_max": one["rss_mb_max"],
        "workers": workers,
        "metrics_per_envelope": len(METRICS),
        "single": one,
        "baseline": baseline,
    }
    if many:
        result["shared"] = many
        result["scale_out_ratio"] = round(many["envelopes_per_s"] / one["envelopes_per_s"], 3)
        result["lost"] += many["lost"]
        result["duplicates"] += many["duplicates"]
    if http:
        result["http"] = http
    if soak_result:
        result["soak"] = soak_result
    result["machine"] = {"cpus": os.cpu_count(), "when": datetime.now(UTC).isoformat(timespec="seconds")}
    return json.loads(json.dumps(result, default=float))
