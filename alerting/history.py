"""Backtests over stored history: TimescaleDB telemetry + the registry's devices, replayed
through ``alerting.backtest`` (the live engine's code) one tenant per engine, as live."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import psycopg

from alerting.backtest import backtest
from alerting.engine import Reading
from alerting.store import load_devices

__all__ = ["load_readings", "run_backtest"]


def load_readings(conn: psycopg.Connection, tenant_id: str, start: datetime, end: datetime) -> list[Reading]:
    """Stored long-format rows regrouped into readings (one per device and timestamp)."""
    grouped: dict[tuple[str, datetime], dict[str, float]] = {}
    with conn.cursor() as cur:
        cur.execute(
            """select device_id, time, metric, value from telemetry
               where tenant_id = %s and time >= %s and time <= %s order by time, device_id""",
            (tenant_id, start, end),
        )
        for device, ts, metric, value in cur:
            grouped.setdefault((device, ts), {})[metric] = value
    return [Reading(tenant_id, d, ts, m) for (d, ts), m in grouped.items()]


def _tenants(conn: psycopg.Connection, start: datetime, end: datetime) -> list[str]:
    rows = conn.execute(
        """select tenant_id from devices union
           select distinct tenant_id from ingest_hours where hour >= date_trunc('hour', %s::timestamptz) and hour <= %s""",
        (start, end),
    ).fetchall()
    return sorted(r[0] for r in rows)


def run_backtest(conn: psycopg.Connection, rules: Iterable[Any], start: datetime, end: datetime, *,
                 tenant: str | None = None, step: timedelta | None = None) -> dict[str, Any]:
    rules = list(rules)
    tenants = [tenant] if tenant else _tenants(conn, start, end)
    devices = load_devices(conn, tenant)
    per_rule: dict[str, dict[str, Any]] = {
        r.id: {"rule_id": r.id, "shadow": r.shadow, "alerts_fired": 0, "flaps": 0, "pages": 0, "transitions": 0,
               "time_in_alert_s": 0.0} for r in rules}
    transitions: list[dict[str, Any]] = []
    readings = skipped = 0
    open_at_end = 0
    for t in tenants:
        rep = backtest(rules, devices.get(t, []), load_readings(conn, t, start, end), start, end, step)
        readings += rep.readings
        skipped += rep.skipped
        open_at_end += len(rep.open_at_end)
        for rid, st in rep.per_rule.items():
            d = per_rule.setdefault(rid, {"rule_id": rid, "shadow": st.shadow, "alerts_fired": 0, "flaps": 0,
                                          "pages": 0, "transitions": 0, "time_in_alert_s": 0.0})
            d["alerts_fired"] += st.alerts_fired
            d["flaps"] += st.flaps
            d["pages"] += st.pages
            d["transitions"] += st.transitions
            d["time_in_alert_s"] += st.time_in_alert.total_seconds()
        transitions += [
            {"alert_id": x.alert_id, "tenant_id": x.tenant_id, "rule_id": x.rule_id, "subject": x.fingerprint.subject,
             "from_state": x.from_state.value, "to_state": x.to_state.value, "at": x.at.isoformat(),
             "value": x.value, "notify": x.notify, "shadow": x.shadow, "reason": x.reason}
            for x in rep.transitions
        ]
    conn.commit()
    days = max((end - start) / timedelta(days=1), 1e-9)
    for d in per_rule.values():
        d["pages_per_day"] = d["pages"] / days
    pages = sum(d["pages"] for d in per_rule.values() if not d["shadow"])
    return {
        "from": start.isoformat(), "to": end.isoformat(), "tenants": tenants, "readings": readings,
        "skipped": skipped, "alerts_fired": sum(d["alerts_fired"] for d in per_rule.values()),
        "flaps": sum(d["flaps"] for d in per_rule.values()), "pages": pages, "pages_per_day": pages / days,
        "time_in_alert_s": sum(d["time_in_alert_s"] for d in per_rule.values()), "open_at_end": open_at_end,
        "per_rule": sorted(per_rule.values(), key=lambda d: d["rule_id"]), "transitions": transitions,
    }
