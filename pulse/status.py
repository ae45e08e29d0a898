"""A one-screen summary of the platform's state (`pulse status`, the interim demo)."""

from __future__ import annotations

import psycopg

from pulse import quarantine
from pulse.db import has_timescale


def summary(conn: psycopg.Connection) -> dict:
    devices, active, seen, fresh = conn.execute(
        """select count(*), count(*) filter (where d.status = 'active'), count(s.device_id),
                  count(*) filter (where s.last_seen > now() - interval '5 minutes')
           from devices d left join device_state s using (tenant_id, device_id)"""
    ).fetchone()
    tenants = conn.execute("select count(*) from tenants").fetchone()[0]
    # The ingest_hours ledger counts rows without scanning the telemetry table.
    rows, last_hour_rows = conn.execute(
        """select coalesce(sum(rows), 0), coalesce(sum(rows) filter (where hour >= date_trunc('hour', now())), 0)
           from ingest_hours"""
    ).fetchone()
    newest = conn.execute("select max(last_seen) from device_state").fetchone()[0]
    return {
        "store": "timescaledb" if has_timescale(conn) else "postgresql (embedded, no TimescaleDB)",
        "tenants": tenants,
        "devices": devices,
        "devices_active": active,
        "devices_reporting": seen,
        "devices_fresh_5m": fresh,
        "telemetry_rows": int(rows),
        "rows_this_hour": int(last_hour_rows),
        "newest_reading": newest.isoformat() if newest else None,
        "quarantined": quarantine.counts(conn),
    }
