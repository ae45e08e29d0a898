"""Alert analytics on hand-built alerts/alert_events rows: noisiest rules, per device/site,
auto-resolved within N minutes, pages per responder and per on-call shift, flapping share."""

from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
import pytest

from alerting.oncall import Schedule
from assets.alert_analytics import UNACKED, alert_analytics, alert_analytics_partition, read_alert_analytics
from tests.assets.test_sla_report import T, _alert, _event, seed_alerts

DAY = datetime(2026, 1, 5, tzinfo=UTC)


def seed_noise(conn):
    """On top of seed_alerts: a noisy rule 'r-door' (3 alerts, 2 auto-resolved in 2 min, one
    flapping), another tenant's alert, and a shadow alert that must not count."""
    s = lambda sec: T + timedelta(seconds=sec)  # noqa: E731
    for i, (dev, site) in enumerate((("door-1", "site-1"), ("door-1", "site-1"), ("door-2", "site-2"))):
        aid = f"d{i}"
        _alert(conn, aid, "info", site, s(4000 + i * 100), rule="r-door", device=dev, resolved=s(4000 + i * 100 + 120),
               count=3)
        _event(conn, aid, s(4000 + i * 100), None, "firing", notify=True)
        if i == 2:
            _event(conn, aid, s(4010 + i * 100), "firing", "flapping", notify=True)
            _event(conn, aid, s(4020 + i * 100), "flapping", "firing", notify=False)
            _event(conn, aid, s(4120 + i * 100), "firing", "resolved", action="resolve", actor="carol")
        else:
            _event(conn, aid, s(4000 + i * 100 + 120), "firing", "resolved")
    _alert(conn, "o1", "critical", "x", s(100), tenant="other", rule="r-x", device="x-1", resolved=s(200))
    _event(conn, "o1", s(100), None, "firing", notify=True)
    conn.execute("""insert into alerts (alert_id, fingerprint, tenant_id, rule_id, subject, severity, state, started_at,
                    last_seen, shadow) values ('sh', 'acme/r-sh/x', 'acme', 'r-sh', 'x', 'info', 'firing', %s, %s, true)""",
                 (s(10), s(10)))
    conn.commit()


def test_alert_analytics_tables(pg_url, tmp_path):
    from assets.alert_analytics import load_alert_frames

    with psycopg.connect(pg_url) as conn:
        seed_alerts(conn)
        seed_noise(conn)
        alerts, events = load_alert_frames(conn, DAY, DAY + timedelta(days=1))
    assert "sh" not in alerts["alert_id"].to_list() and "a6" not in alerts["alert_id"].to_list()
    t = alert_analytics(alerts, events, start=DAY, end=DAY + timedelta(days=1), auto_resolve_minutes=5)

    rules = t["rules"].filter(pl.col("tenant_id") == "acme")
    assert rules["rule_id"].to_list() == ["r-temp", "r-door"]  # noisiest (most alerts) first
    assert rules["alerts"].to_list() == [5, 3]
    door = rules.row(1, named=True)
    assert (door["alerts"], door["occurrences"], door["auto_resolved"], door["flapping"]) == (3, 9, 2, 1)
    assert door["share"] == pytest.approx(3 / 8)  # a1..a5 + 3 door alerts
    devices = {(r["device_id"]): r["alerts"] for r in t["devices"].filter(pl.col("tenant_id") == "acme").to_dicts()}
    assert devices == {"pump-00000": 5, "door-1": 2, "door-2": 1}
    sites = {r["site_id"]: r["alerts"] for r in t["sites"].filter(pl.col("tenant_id") == "acme").to_dicts()}
    assert sites == {"site-1": 6, "site-2": 2}

    summ = {r["tenant_id"]: r for r in t["summary"].to_dicts()}
    acme = summ["acme"]
    # fired: a1 a2 a3 a5 d0 d1 d2 (a4 never fired); auto-resolved ≤ 5 min by the engine, unacked: a3 d0 d1
    # (d2 was resolved by carol)
    assert (acme["alerts"], acme["fired"], acme["auto_resolved"], acme["flapping"]) == (8, 7, 3, 1)
    assert acme["auto_resolved_share"] == pytest.approx(3 / 7) and acme["flapping_share"] == pytest.approx(1 / 7)
    assert summ["other"]["fired"] == 1

    # pages: notify events. a1: 2 (firing + ack) → alice; a2: 1 → bob; a3: 2; d0, d1: 1 each; d2: 2 → unacked
    resp = {r["responder"]: r for r in t["responders"].filter(pl.col("tenant_id") == "acme").to_dicts()}
    assert resp["alice"]["pages"] == 2 and resp["alice"]["acknowledged"] == 2  # a1 and a5 acked by alice
    assert resp["alice"]["mtta_s"] == pytest.approx((120 + 60) / 2)
    assert resp["bob"]["pages"] == 1 and resp[UNACKED]["pages"] == 2 + 1 + 1 + 2
    shifts = t["shifts"].filter(pl.col("tenant_id") == "acme")
    assert shifts.height == 1 and shifts["pages"][0] == 9  # no schedules: one shift per day

    # with a schedule: alice 00:00-06:30 UTC, bob after (12h rotation in UTC starting 18:30 the day before)
    sched = Schedule.model_validate({"id": "ops", "name": "Ops", "time_zone": "UTC", "layers": [
        {"name": "l1", "users": ["alice", "bob"], "rotation": "12h", "start": "2026-01-04T18:30:00"}]})
    t2 = alert_analytics(alerts, events, start=DAY, end=DAY + timedelta(days=1), schedules=[sched])
    sh = t2["shifts"].filter(pl.col("tenant_id") == "acme").sort("shift_start")
    # T = 06:00: a1 pages (06:00, 06:02) in alice's shift ending 06:30; the rest from 06:16:40 on... split by time
    alice = sh.filter(pl.col("on_call") == "alice").row(0, named=True)
    assert alice["shift_end"] == datetime(2026, 1, 5, 6, 30, tzinfo=UTC)
    inside = events.filter(pl.col("notify") & (pl.col("at") < alice["shift_end"])
                           & pl.col("alert_id").is_in(alerts.filter(pl.col("tenant_id") == "acme")["alert_id"].to_list()))
    assert alice["pages"] == inside.height and alice["acknowledged_by_on_call"] == 2
    assert sh["pages"].sum() == 9

    with psycopg.connect(pg_url) as conn:
        rows = alert_analytics_partition(conn, tmp_path, DAY, DAY + timedelta(days=1))
    assert rows["rules"] == t["rules"].height
    back = read_alert_analytics(tmp_path, "rules", "acme")
    assert back.sort("rule_id").equals(t["rules"].filter(pl.col("tenant_id") == "acme").sort("rule_id"))
    assert (tmp_path / "alert_analytics" / "summary" / "tenant=other" / "date=2026-01-05" / "day.parquet").exists()
