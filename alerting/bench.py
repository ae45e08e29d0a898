"""`pulse bench alerts`: end-to-end alert latency through the real ingest service.

Method: a throw-away tenant with one device and one threshold rule is created in the
database; an in-process ``IngestService`` (HTTP on loopback, the real batch writer) runs
with an ``AlertService`` listener. For each of N breaches the bench takes the time, POSTs
a breaching reading, and waits for ``pg_notify('pulse_outbox')`` — sent by the transaction
that commits the alert_events row AND its outbox row, so the notification's arrival is the
moment both are durable. Then a clearing reading resolves the alert (not timed) so the next
breach opens a new alert. Engine throughput is measured separately in-process (pure
evaluation, no I/O). Everything the bench created is deleted at the end.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Jsonb

from alerting.engine import DeviceInfo, Engine, Reading
from alerting.service import AlertService
from pulse import registry

__all__ = ["run_alert_bench", "engine_rate"]


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def engine_rate(readings: int = 50_000, devices: int = 500) -> dict[str, Any]:
    """Pure engine evaluations/s: threshold + window + absence rules on every device."""
    rules = [
        {"id": "hot", "kind": "threshold", "metric": "temp_c", "op": ">", "value": 80, "clear": 70},
        {"id": "avg", "kind": "window", "metric": "temp_c", "agg": "avg", "window": "5m", "op": ">", "value": 75},
        {"id": "gone", "kind": "absence", "duration": "10m"},
    ]
    devs = [DeviceInfo("bench", f"d{i}") for i in range(devices)]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    eng = Engine(rules, devs, clock_start=t0)
    batch = [Reading("bench", f"d{i % devices}", t0 + timedelta(milliseconds=20 * i),
                     {"temp_c": 60.0 + 30.0 * ((i // devices) % 7 == 3)}) for i in range(readings)]
    transitions = 0
    started = time.perf_counter()
    for r in batch:
        transitions += len(eng.observe(r))
    seconds = time.perf_counter() - started
    return {"readings": readings, "devices": devices, "rules": len(rules), "seconds": round(seconds, 3),
            "evaluations_per_s": round(readings / seconds), "transitions": transitions}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_alert_bench(database_url: str, *, breaches: int = 100, warmup: int = 5,
                    engine_readings: int = 50_000, timeout_s: float = 10.0) -> dict[str, Any]:
    """End-to-end latency (HTTP POST → committed alert_events + outbox row) over ``breaches``
    breaches, p50/p95/p99 in ms, plus the engine's evaluations/s."""
    from ingest.service import IngestService
    from pulse.settings import get_settings

    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    rule_id = f"bench-hot-{tenant}"
    with psycopg.connect(database_url) as conn:
        registry.upsert_tenant(conn, tenant, "alert bench")
        token = registry.add_device(conn, registry.Device(tenant, "d1")).token
        conn.execute("insert into config_objects (kind, id, definition) values ('rule', %s, %s)",
                     (rule_id, Jsonb({"id": rule_id, "kind": "threshold", "metric": "temp_c", "op": ">",
                                      "value": 80, "shadow": False, "target": {"tenant": tenant}})))
        conn.commit()
    settings = get_settings().model_copy(update={"batch_linger_ms": 5})
    port = _free_port()
    alerts = AlertService(database_url, snapshot_interval_s=3600)
    service = IngestService(settings, database_url, mqtt_url=None, http_port=port, listeners=[alerts])
    listen = psycopg.connect(database_url, autocommit=True)
    listen.execute("listen pulse_outbox")
    latencies: list[float] = []
    try:
        service.start()
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"})

        def post(value: float) -> None:
            body = {"v": 1, "device_id": "d1", "ts": datetime.now(UTC).isoformat(), "metrics": {"temp_c": value}}
            r = client.post("/v1/telemetry", json=body, timeout=timeout_s)
            if r.status_code != 202:
                raise RuntimeError(f"ingest refused a bench reading: {r.status_code} {r.text}")

        def wait_outbox() -> None:
            for _ in listen.notifies(timeout=timeout_s, stop_after=1):
                return
            raise RuntimeError(f"no outbox notification within {timeout_s}s")

        for i in range(warmup + breaches):
            started = time.perf_counter()
            post(95.0)
            wait_outbox()
            if i >= warmup:
                latencies.append((time.perf_counter() - started) * 1000)
            post(20.0)  # resolve (notifies too), so the next breach opens a new alert
            wait_outbox()
        client.close()
    finally:
        service.stop()
        listen.close()
        with psycopg.connect(database_url) as conn:
            conn.execute("delete from alerts where tenant_id = %s", (tenant,))
            conn.execute("delete from engine_snapshots where partition_key = %s", (tenant,))
            conn.execute("delete from config_objects where kind = 'rule' and id = %s", (rule_id,))
            conn.execute("delete from telemetry where tenant_id = %s", (tenant,))
            conn.execute("delete from ingest_hours where tenant_id = %s", (tenant,))
            conn.execute("delete from tenants where tenant_id = %s", (tenant,))
    return {
        "transport": "http",
        "breaches": len(latencies),
        "latency_ms": {"p50": round(_pct(latencies, 0.50), 2), "p95": round(_pct(latencies, 0.95), 2),
                       "p99": round(_pct(latencies, 0.99), 2), "max": round(max(latencies), 2),
                       "mean": round(statistics.fmean(latencies), 2)},
        "measured": "HTTP POST sent → pg_notify of the committed alert_events + notification_outbox transaction",
        "engine": engine_rate(engine_readings),
    }
