"""Helpers for the SLA / alert-analytics tests: a simulated tenant with known outages,
hand-built alerts, and report tables that conftest's truncation does not know about."""

from datetime import timedelta

import psycopg

from assets.sla import parse_period
from pulse.simulate import backfill, provision
from pulse.simulator import Fault, make_fleet

TENANT = "acme"
ZONE = "Asia/Kolkata"  # +05:30: local days do not start on a UTC hour
PERIOD = "2026-01-05"
INTERVAL_S = 60.0


def clear_reports(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("truncate report_runs, report_settings restart identity")


def outage_faults(period):
    """Ground truth: offline faults at odd seconds, inside, across the start and the end."""
    s = period.start
    return [
        Fault(TENANT, "pump-00000", None, "offline", s + timedelta(hours=3, seconds=17), s + timedelta(hours=4, seconds=41)),
        Fault(TENANT, "pump-00000", None, "offline", s + timedelta(hours=10, seconds=5), s + timedelta(hours=10, minutes=25)),
        Fault(TENANT, "chiller-00001", None, "offline", s - timedelta(minutes=30, seconds=9), s + timedelta(minutes=47, seconds=30)),
        Fault(TENANT, "meter-00002", None, "offline", period.end - timedelta(hours=2, seconds=33), period.end + timedelta(minutes=20)),
    ]


def seed_tenant(url: str):
    """4 devices of TENANT (zone ZONE), telemetry for the local day PERIOD ±1 h with outage_faults."""
    period = parse_period(PERIOD, ZONE)
    fleet = make_fleet(4, tenants=(TENANT,), types=("pump", "chiller", "meter"))
    faults = outage_faults(period)
    assert {f.device_id for f in faults} <= {d.device_id for d in fleet}
    with psycopg.connect(url) as conn:
        provision(conn, fleet)
        conn.execute("update tenants set time_zone = %s where tenant_id = %s", (ZONE, TENANT))
        conn.commit()
        backfill(conn, fleet, period.start - timedelta(hours=1), period.end + timedelta(hours=1),
                 interval_s=INTERVAL_S, faults=faults, dropout=0.0)
    return period, fleet, faults


def truth_downtime(faults, device_id, period):
    out = []
    for f in faults:
        if f.device_id == device_id:
            a, b = max(f.start, period.start), min(f.end, period.end)
            if b > a:
                out.append((a, b))
    return out
