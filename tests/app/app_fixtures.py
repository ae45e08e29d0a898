"""Test data for the Streamlit app: two tenants from the real simulator, a lake export with
rollups, alerts with their audit trail, quarantine rows and asset check results."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from pulse import registry
from pulse.simulate import backfill, history_window, provision
from pulse.simulator import make_fleet

TENANT_A, TENANT_B = "acme", "globex"


@dataclass
class Seeded:
    url: str
    lake_dir: Path
    a_devices: list[str]
    b_devices: list[str]
    a_alert: str
    b_alert: str
    a_shown: str = ""  # the device the explorer shows first for tenant A (scores, a silence, a gap)
    a_deliveries: tuple[int, ...] = ()  # sent, dead (of a_alert)
    b_deliveries: tuple[int, ...] = ()  # failed, sent (of b_alert)


def seed(url: str, lake_dir: Path, *, hours: float = 24, exported_hours: int = 2) -> Seeded:
    from assets.lake import export_hour
    from assets.rollups import rollup_partition

    fleet = make_fleet(8, tenants=(TENANT_A, TENANT_B), sites_per_tenant=2, seed=11)
    start, end = history_window(hours / 24)
    with psycopg.connect(url) as conn:
        provision(conn, fleet, issue_tokens=True)
        # one device per tenant never reports: the "never seen" KPI
        silent = {TENANT_A: None, TENANT_B: None}
        for d in fleet:
            silent[d.tenant_id] = silent[d.tenant_id] or d
        backfill(conn, [d for d in fleet if d not in silent.values()], start, end, interval_s=300, dropout=0.0)
        registry.upsert_site(conn, TENANT_A, "site-1", "Acme Plant 1", latitude=52.52, longitude=13.40)
        registry.upsert_site(conn, TENANT_B, "site-1", "Globex Plant 1", latitude=40.71, longitude=-74.0)
        conn.commit()
        for k in range(exported_hours):
            hour = (end - timedelta(hours=k + 3)).replace(minute=0, second=0, microsecond=0)
            export_hour(conn, lake_dir, hour)
            rollup_partition(lake_dir, "1h", hour, hour + timedelta(hours=1), engine="polars")  # faster on tiny data
        conn.commit()
        a_dev = [d.device_id for d in fleet if d.tenant_id == TENANT_A]
        b_dev = [d.device_id for d in fleet if d.tenant_id == TENANT_B]
        a_reporting = [d.device_id for d in fleet if d.tenant_id == TENANT_A and d is not silent[TENANT_A]]
        b_reporting = [d.device_id for d in fleet if d.tenant_id == TENANT_B and d is not silent[TENANT_B]]
        a_alert = _alert(conn, TENANT_A, a_reporting[0], "acme-hot-pump", "critical", end - timedelta(hours=2))
        b_alert = _alert(conn, TENANT_B, b_reporting[0], "globex-secret-rule", "warning", end - timedelta(hours=1))
        a_deliveries = (_delivery(conn, a_alert, "slack-ops", "sent", 1, None),
                        _delivery(conn, a_alert, "pagerduty", "dead", 8, "HTTP 503 from events.pagerduty.com"))
        b_deliveries = (_delivery(conn, b_alert, "globex-webhook", "failed", 2, "globex secret timeout"),
                        _delivery(conn, b_alert, "globex-email", "sent", 1, None))
        a_shown = sorted(a_reporting)[0]  # the explorer's default device for tenant A
        _scores(conn, TENANT_A, a_shown, start, end)
        _scores(conn, TENANT_B, sorted(b_reporting)[0], start, end)
        # a past silence of that device, and a reporting gap of an hour (an offline interval)
        conn.execute("""insert into silences (tenant_id, matchers, starts_at, ends_at, created_by, comment)
                        values (%s, %s, %s, %s, 'olga', 'pump maintenance')""",
                     (TENANT_A, Jsonb({"tenant_id": TENANT_A, "device_id": a_shown}), end - timedelta(hours=10),
                      end - timedelta(hours=9)))
        conn.execute("delete from telemetry where tenant_id = %s and device_id = %s and time >= %s and time < %s",
                     (TENANT_A, a_shown, end - timedelta(hours=8), end - timedelta(hours=7)))
        conn.execute("""insert into quarantine (transport, tenant_id, device_id, reason, detail, payload)
                        values ('http', %s, 'ghost-1', 'unknown_device', 'not registered', %s),
                               ('mqtt', %s, 'ghost-2', 'unsupported_version', 'v=9', %s)""",
                     (TENANT_A, b'{"v":1,"device_id":"ghost-1"}', TENANT_B, b'{"v":9,"globex":"secret"}'))
        conn.execute("""insert into asset_check_results (asset_key, check_name, partition_key, passed, severity, metadata)
                        values ('telemetry_lake', 'row_count_matches_db', '2026-01-01-00:00', true, 'ERROR', %s),
                               ('rollups_1h', 'no_gaps', '2026-01-01', false, 'WARN', %s)""",
                     (Jsonb({"rows": 10}), Jsonb({"missing": 2})))
        conn.commit()
    return Seeded(url, lake_dir, a_dev, b_dev, a_alert, b_alert, a_shown, a_deliveries, b_deliveries)


def _alert(conn, tenant: str, device: str, rule: str, severity: str, started) -> str:
    alert_id = f"{tenant}-{rule}-{device}"
    conn.execute(
        """insert into alerts (alert_id, fingerprint, tenant_id, rule_id, subject, device_id, site_id, severity, state,
                               summary, value, started_at, last_seen)
           values (%s, %s, %s, %s, %s, %s, 'site-1', %s, 'firing', %s, 99.5, %s, %s)""",
        (alert_id, f"{tenant}/{rule}/{device}", tenant, rule, device, device, severity, f"{rule} on {device}",
         started, started + timedelta(minutes=30)),
    )
    conn.execute(
        """insert into alert_events (alert_id, at, from_state, to_state, action, actor, reason, value)
           values (%s, %s, null, 'pending', 'transition', 'engine', 'breach', 99.5),
                  (%s, %s, 'pending', 'firing', 'transition', 'engine', 'for elapsed', 99.7)""",
        (alert_id, started, alert_id, started + timedelta(minutes=5)),
    )
    return alert_id


def _delivery(conn, alert_id: str, channel: str, status: str, attempts: int, error: str | None) -> int:
    """One delivery of the alert's firing event with its attempts (the last one as ``status`` says)."""
    (event_id,) = conn.execute("select max(event_id) from alert_events where alert_id = %s", (alert_id,)).fetchone()
    (delivery_id,) = conn.execute(
        """insert into deliveries (idempotency_key, alert_id, event_id, source, route_id, channel_id, recipient,
                                   event, payload, status, attempts, last_error, last_status_code, sent_at)
           values (%s, %s, %s, 'route', 'default', %s, '', 'firing', '{}', %s, %s, %s, %s,
                   case when %s = 'sent' then now() end) returning delivery_id""",
        (f"{alert_id}/{channel}", alert_id, event_id, channel, status, attempts, error,
         None if status == "sent" else 503, status)).fetchone()
    for n in range(1, attempts + 1):
        ok = status == "sent" and n == attempts
        conn.execute("""insert into delivery_attempts (delivery_id, attempt, channel_id, worker_id, at, ok, status_code,
                                                       latency_ms, error)
                        values (%s, %s, %s, 'w1', now() - make_interval(mins => %s), %s, %s, 42.0, %s)""",
                     (delivery_id, n, channel, attempts - n, ok, 200 if ok else 503, None if ok else error))
    return delivery_id


def _scores(conn, tenant: str, device: str, start, end) -> None:
    """Calibrated anomaly scores every 5 minutes for each metric of the device: low, one peak."""
    import math

    metrics = [r[0] for r in conn.execute("select distinct metric from telemetry where tenant_id = %s and device_id = %s",
                                          (tenant, device))]
    n = int((end - start).total_seconds() // 300)
    rows = [(start + timedelta(minutes=5 * i), tenant, device, m, 0.95 if i == n // 2 else 0.2 + 0.1 * math.sin(i / 7),
             0.0, 1) for m in metrics for i in range(n)]
    with conn.cursor().copy("copy anomaly_scores (time, tenant_id, device_id, metric, score, raw, model_id) "
                            "from stdin") as copy:
        for row in rows:
            copy.write_row(row)
