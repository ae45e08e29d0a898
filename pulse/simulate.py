"""Drivers of the fleet simulator: provisioning, history backfill (COPY), live MQTT/HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from pulse import envelope, registry
from pulse.settings import parse_mqtt_url
from pulse.simulator import (
    COPY_HEADER,
    COPY_TRAILER,
    Fault,
    LiveState,
    SimDevice,
    copy_rows_binary,
    is_offline,
    live_reading,
    online_mask,
    series,
    time_grid,
    utcnow,
)

# ------------------------------------------------------------------ provisioning


def provision(conn: psycopg.Connection, fleet: Sequence[SimDevice], *, issue_tokens: bool = False) -> dict[str, str]:
    """Register the fleet's tenants, sites and devices. With ``issue_tokens`` every device
    gets a fresh token (returned; used by the HTTP transport)."""
    tokens: dict[str, str] = {}
    with conn.transaction():
        for tenant in sorted({d.tenant_id for d in fleet}):
            if not registry.tenant_exists(conn, tenant):
                registry.upsert_tenant(conn, tenant, f"Simulated tenant {tenant}")
        for tenant, site in sorted({(d.tenant_id, d.site_id) for d in fleet if d.site_id}):
            registry.upsert_site(conn, tenant, site, site.replace("-", " ").title())
        for dev in fleet:
            registry.upsert_device(conn, registry.Device(dev.tenant_id, dev.device_id, dev.site_id, dev.device_type,
                                                         tags={"sim": "true", "type": dev.device_type}))
            if issue_tokens:
                tokens[dev.device_id] = registry.rotate_token(conn, dev.tenant_id, dev.device_id).token
    return tokens


# ------------------------------------------------------------------ backfill


@dataclass
class BackfillResult:
    rows: int
    devices: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def _copy_block(conn: psycopg.Connection, block: bytes) -> None:
    data = COPY_HEADER + block + COPY_TRAILER
    cols = "(time, tenant_id, device_id, metric, value)"
    with conn.cursor() as cur:
        try:
            with conn.transaction():
                with cur.copy(f"copy telemetry {cols} from stdin (format binary)") as copy:
                    copy.write(data)
        except psycopg.errors.UniqueViolation:
            # history overlapping what is stored: keep what is there, add the rest
            cur.execute("create temp table if not exists backfill_stage (like telemetry including defaults)")
            with cur.copy(f"copy backfill_stage {cols} from stdin (format binary)") as copy:
                copy.write(data)
            cur.execute(f"insert into telemetry {cols} select {cols[1:-1]} from backfill_stage on conflict do nothing")
            cur.execute("truncate backfill_stage")


def backfill(conn: psycopg.Connection, fleet: Sequence[SimDevice], start: datetime, end: datetime, *,
             interval_s: float = 60.0, faults: Sequence[Fault] = (), dropout: float = 0.001,
             block_rows: int = 200_000, progress: Callable[[int], None] | None = None) -> BackfillResult:
    """Write simulated history for [start, end) with binary COPY, then derive device state
    and ingest hours for the range in SQL."""
    started = time.perf_counter()
    grid = time_grid(start, end, interval_s)
    total = 0
    parts: list[bytes] = []
    pending = 0
    for dev in fleet:
        keep = online_mask(dev, grid, faults, dropout)
        epoch = grid[keep]
        for metric in dev.metrics:
            values = series(dev, metric, grid, faults)[keep]
            parts.append(copy_rows_binary(dev.tenant_id, dev.device_id, metric.name, epoch, values))
            pending += len(epoch)
        if pending >= block_rows:
            _copy_block(conn, b"".join(parts))
            conn.commit()
            total += pending
            if progress:
                progress(pending)
            parts, pending = [], 0
    if pending:
        _copy_block(conn, b"".join(parts))
        conn.commit()
        total += pending
        if progress:
            progress(pending)
    refresh_derived(conn, [d.tenant_id for d in fleet], start, end)
    return BackfillResult(total, len(fleet), time.perf_counter() - started)


def refresh_derived(conn: psycopg.Connection, tenants: Sequence[str], start: datetime, end: datetime) -> None:
    """Bring device_state and ingest_hours in line with telemetry written around ingest."""
    tenants = sorted(set(tenants))
    with conn.transaction():
        conn.execute(
            """insert into ingest_hours as h (tenant_id, hour, rows, last_ingested_at)
               select tenant_id, date_trunc('hour', time), count(*), now() from telemetry
               where tenant_id = any(%s) and time >= %s and time < %s
               group by 1, 2
               on conflict (tenant_id, hour) do update set rows = excluded.rows,
                   last_ingested_at = excluded.last_ingested_at""",
            (tenants, start, end),
        )
        conn.execute(
            """insert into device_state as s (tenant_id, device_id, last_seen, last_received_at, last_values, rows)
               select tenant_id, device_id, max(time), now(), jsonb_object_agg(metric, value), sum(n)
               from (select distinct on (tenant_id, device_id, metric) tenant_id, device_id, metric, time, value,
                            count(*) over (partition by tenant_id, device_id, metric) as n
                     from telemetry where tenant_id = any(%s) and time >= %s and time < %s
                     order by tenant_id, device_id, metric, time desc) latest
               group by tenant_id, device_id
               on conflict (tenant_id, device_id) do update set
                   last_seen = greatest(s.last_seen, excluded.last_seen),
                   last_values = case when excluded.last_seen >= s.last_seen then s.last_values || excluded.last_values
                                      else excluded.last_values || s.last_values end,
                   rows = s.rows + excluded.rows""",
            (tenants, start, end),
        )


# ------------------------------------------------------------------ live simulation


@dataclass
class LiveStats:
    sent: int = 0
    acked: int = 0
    failed: int = 0
    skipped_offline: int = 0
    seconds: float = 0.0


class _Pacer:
    """Spreads ``rate`` sends per second evenly; sleeps only when ahead of schedule."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = time.perf_counter()

    def wait(self) -> None:
        if not self.interval:
            return
        self.next += self.interval
        delay = self.next - time.perf_counter()
        if delay > 0.002:
            time.sleep(delay)


def live_envelopes(fleet: Sequence[SimDevice], faults: Sequence[Fault], dropout: float, seed: int = 1):
    """Endless round-robin over the fleet: (device, envelope bytes) at the current time."""
    import random

    rng = random.Random(seed)
    states = {d.device_id: LiveState() for d in fleet}
    while True:
        for dev in fleet:
            now = utcnow()
            if is_offline(dev, now, faults) or (dropout and rng.random() < dropout):
                yield dev, None
                continue
            state = states[dev.device_id]
            values = live_reading(dev, state, now, faults, rng)
            yield dev, envelope.encode(dev.device_id, now, values, seq=state.seq,
                                       msg_id=f"{dev.device_id}-{state.seq}")


def run_mqtt(url: str, fleet: Sequence[SimDevice], *, rate: float, duration_s: float,
             faults: Sequence[Fault] = (), dropout: float = 0.0, stop: threading.Event | None = None,
             client_id: str = "pulse-simulator") -> LiveStats:
    import paho.mqtt.client as mqtt

    host, port = parse_mqtt_url(url)
    stats = LiveStats()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    lock = threading.Lock()

    def on_publish(client, userdata, mid, reason_code, properties):
        with lock:
            stats.acked += 1

    client.on_publish = on_publish
    client.connect(host, port)
    client.loop_start()
    pacer = _Pacer(rate)
    started = time.perf_counter()
    try:
        for dev, body in live_envelopes(fleet, faults, dropout):
            if time.perf_counter() - started >= duration_s or (stop is not None and stop.is_set()):
                break
            if body is None:
                stats.skipped_offline += 1
                continue
            client.publish(f"pulse/v1/{dev.tenant_id}/{dev.device_id}/telemetry", body, qos=1)
            stats.sent += 1
            pacer.wait()
        deadline = time.perf_counter() + 30
        while stats.acked < stats.sent and time.perf_counter() < deadline:
            time.sleep(0.02)
    finally:
        client.disconnect()
        client.loop_stop()
    stats.failed = stats.sent - stats.acked
    stats.seconds = time.perf_counter() - started
    return stats


def run_http(base_url: str, fleet: Sequence[SimDevice], tokens: dict[str, str], *, rate: float, duration_s: float,
             faults: Sequence[Fault] = (), dropout: float = 0.0, stop: threading.Event | None = None) -> LiveStats:
    import httpx

    stats = LiveStats()
    pacer = _Pacer(rate)
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for dev, body in live_envelopes(fleet, faults, dropout):
            if time.perf_counter() - started >= duration_s or (stop is not None and stop.is_set()):
                break
            if body is None:
                stats.skipped_offline += 1
                continue
            stats.sent += 1
            try:
                response = client.post("/v1/telemetry", content=body,
                                       headers={"Authorization": f"Bearer {tokens[dev.device_id]}",
                                                "Content-Type": "application/json"})
                if response.status_code == 202:
                    stats.acked += 1
                else:
                    stats.failed += 1
            except httpx.HTTPError:
                stats.failed += 1
            pacer.wait()
    stats.seconds = time.perf_counter() - started
    return stats


def history_window(days: float, end: datetime | None = None) -> tuple[datetime, datetime]:
    end = end or utcnow()
    end = end.replace(second=0, microsecond=0)
    return end - timedelta(days=days), end


def points(fleet: Sequence[SimDevice], start: datetime, end: datetime, interval_s: float) -> int:
    return len(time_grid(start, end, interval_s)) * sum(len(d.metrics) for d in fleet)


__all__ = ["provision", "backfill", "run_mqtt", "run_http", "history_window", "points", "refresh_derived",
           "BackfillResult", "LiveStats"]
