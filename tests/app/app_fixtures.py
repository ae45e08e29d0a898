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
        conn.execute("""insert into quarantine (transport, tenant_id, device_id, reason, detail, payload)
                        values ('http', %s, 'ghost-1', 'unknown_device', 'not registered', %s),
                               ('mqtt', %s, 'ghost-2', 'unsupported_version', 'v=9', %s)""",
                     (TENANT_A, b'{"v":1,"device_id":"ghost-1"}', TENANT_B, b'{"v":9,"globex":"secret"}'))
        conn.execute("""insert into asset_check_results (asset_key, check_name, partition_key, passed, severity, metadata)
                        values ('telemetry_lake', 'row_count_matches_db', '2026-01-01-00:00', true, 'ERROR', %s),
                               ('rollups_1h', 'no_gaps', '2026-01-01', false, 'WARN', %s)""",
                     (Jsonb({"rows": 10}), Jsonb({"missing": 2})))
        conn.commit()
    return Seeded(url, lake_dir, a_dev, b_dev, a_alert, b_alert)


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
