"""SLA reports: availability against the simulator's ground truth, MTTA/MTTR on hand-built
alerts, the CSV/JSON/HTML outputs, and reading through the lake."""

import csv
import json
from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
import pytest

from assets.sla import (ReportSettings, alert_timings, build_sla_report, load_alerts, load_readings, parse_period,
                        response_times, save_report_settings, write_report)
from pulse.errors import UserError
from tests.assets.test_sla_helpers import INTERVAL_S, PERIOD, TENANT, ZONE, clear_reports, seed_tenant, truth_downtime


@pytest.fixture
def sla_url(pg_url):
    clear_reports(pg_url)
    return pg_url


def test_periods_are_tenant_local_and_dst_correct():
    p = parse_period("2026-01-05", "Asia/Kolkata")
    assert p.start == datetime(2026, 1, 4, 18, 30, tzinfo=UTC) and p.seconds == 86400
    march = parse_period("2026-03", "Europe/Berlin")  # DST starts 29 March: month is 1 h short
    assert march.start == datetime(2026, 2, 28, 23, tzinfo=UTC) and march.seconds == 31 * 86400 - 3600
    assert len(march.buckets()) == 31
    assert parse_period("2026-10-25", "Europe/Berlin").seconds == 25 * 3600
    for bad in ("2026-13", "2026-02-30", "yesterday", ""):
        with pytest.raises(UserError):
            parse_period(bad, "UTC")
    with pytest.raises(UserError):
        parse_period("2026-01", "Mars/Olympus")


def test_availability_matches_simulator_ground_truth(sla_url):
    period, fleet, faults = seed_tenant(sla_url)
    with psycopg.connect(sla_url) as conn:
        report = build_sla_report(conn, TENANT, PERIOD, now=period.end + timedelta(days=1))
    assert report.period.time_zone == ZONE and report.period.start == period.start and not report.partial
    devices = {r["device_id"]: r for r in report.avail.devices.to_dicts()}
    assert set(devices) == {d.device_id for d in fleet}
    for dev in fleet:
        truth = truth_downtime(faults, dev.device_id, period)
        incidents = report.avail.incidents.filter(pl.col("device_id") == dev.device_id).sort("start")
        assert incidents.height == len(truth), dev.device_id
        # each outage: start and end within one reporting interval of the truth
        for (ts, te), inc in zip(truth, incidents.iter_rows(named=True)):
            assert abs((inc["start"] - ts).total_seconds()) <= INTERVAL_S
            assert abs((inc["end"] - te).total_seconds()) <= INTERVAL_S
        true_down = sum((b - a).total_seconds() for a, b in truth)
        row = devices[dev.device_id]
        assert abs(row["downtime_s"] - true_down) <= INTERVAL_S * max(1, len(truth)), dev.device_id
        true_pct = 100 * (1 - true_down / period.seconds)
        assert abs(row["availability_pct"] - true_pct) <= 100 * INTERVAL_S * max(1, len(truth)) / period.seconds
        assert row["meets_target"] == (row["availability_pct"] >= 99.5)
    assert devices["pump-00003"]["availability_pct"] == 100.0
    assert devices["pump-00003"]["completeness_pct"] == 100.0
    # outages at the period's edges are flagged
    inc = report.avail.incidents
    assert inc.filter(pl.col("device_id") == "chiller-00001")["began_before"].to_list() == [True]
    assert inc.filter(pl.col("device_id") == "meter-00002")["ongoing"].to_list() == [True]
    # site and tenant roll-ups are device-time weighted
    total_down = sum(r["downtime_s"] for r in devices.values())
    assert report.summary()["availability_pct"] == pytest.approx(100 * (1 - total_down / (4 * period.seconds)), abs=1e-3)
    assert report.avail.sites["devices"].sum() == 4
    assert not report.summary()["meets_target"]
    # hourly chart buckets of the local day, the outage hour below 100 %
    assert report.avail.timeline.height == 24 and report.avail.timeline["bucket"][0] == "00:00"
    assert report.avail.timeline["availability_pct"].min() < 100


def test_target_override_per_tenant(sla_url):
    period, _, _ = seed_tenant(sla_url)
    with psycopg.connect(sla_url) as conn:
        save_report_settings(conn, TENANT, {"target_pct": 90})
        report = build_sla_report(conn, TENANT, PERIOD, now=period.end + timedelta(days=1))
    assert report.target_pct == 90 and report.summary()["meets_target"]


def test_readings_from_lake_equal_hot_store(sla_url, tmp_path):
    from assets.lake import export_hour

    period, _, _ = seed_tenant(sla_url)
    start = period.start + timedelta(hours=2, minutes=30)  # half-hour zone: partial first/last hours
    end = start + timedelta(hours=3)
    with psycopg.connect(sla_url) as conn:
        direct = load_readings(conn, None, TENANT, start, end)
        for h in range(3):  # lake holds only the first hours: the rest must come from the hot store
            export_hour(conn, tmp_path, (start + timedelta(hours=h)).replace(minute=0))
        mixed = load_readings(conn, tmp_path, TENANT, start, end)
    key = ["device_id", "time"]
    assert direct.height > 0 and direct.sort(key).equals(mixed.sort(key))


# ------------------------------------------------------------------ MTTA / MTTR

T = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


def _alert(conn, alert_id, severity, site, started, *, state="resolved", acked=None, by=None, resolved=None,
           tenant=TENANT, rule="r-temp", device="pump-00000", count=1, resolved_by=None):
    conn.execute(
        """insert into alerts (alert_id, fingerprint, tenant_id, rule_id, subject, device_id, site_id, severity, state,
                               started_at, last_seen, acknowledged_at, acknowledged_by, resolved_at, resolved_by, count)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (alert_id, f"{tenant}/{rule}/{alert_id}", tenant, rule, device, device, site, severity, state, started,
         started, acked, by, resolved, resolved_by, count))


def _event(conn, alert_id, at, frm, to, action="transition", actor="engine", notify=False):
    conn.execute("""insert into alert_events (alert_id, at, from_state, to_state, action, actor, notify)
                    values (%s, %s, %s, %s, %s, %s, %s)""", (alert_id, at, frm, to, action, actor, notify))


def seed_alerts(conn):
    s = lambda sec: T + timedelta(seconds=sec)  # noqa: E731
    # a1: pending 60 s, fires at T, alice acks after 120 s, resolved after 600 s
    _alert(conn, "a1", "critical", "site-1", s(-60), acked=s(120), by="alice", resolved=s(600))
    _event(conn, "a1", s(-60), None, "pending")
    _event(conn, "a1", s(0), "pending", "firing", notify=True)
    _event(conn, "a1", s(120), "firing", "acknowledged", action="ack", actor="alice", notify=True)
    _event(conn, "a1", s(600), "acknowledged", "resolved")
    # a2: fires at +1000, bob acks +300, resolved +1800
    _alert(conn, "a2", "critical", "site-2", s(1000), acked=s(1300), by="bob", resolved=s(2800))
    _event(conn, "a2", s(1000), None, "firing", notify=True)
    _event(conn, "a2", s(1300), "firing", "acknowledged", action="ack", actor="bob")
    _event(conn, "a2", s(2800), "acknowledged", "resolved")
    # a3: warning, never acked, auto-resolved after 60 s
    _alert(conn, "a3", "warning", "site-1", s(2000), resolved=s(2060))
    _event(conn, "a3", s(2000), None, "firing", notify=True)
    _event(conn, "a3", s(2060), "firing", "resolved", notify=True)
    # a4: pending → resolved, never paged: not in MTTA/MTTR
    _alert(conn, "a4", "warning", "site-1", s(3000), resolved=s(3030))
    _event(conn, "a4", s(3000), None, "pending")
    _event(conn, "a4", s(3030), "pending", "resolved")
    # a5: hand-made row without events: started_at is the page, acknowledged_at the ack, still open
    _alert(conn, "a5", "critical", "site-1", s(50), state="acknowledged", acked=s(110), by="alice")
    # a6: fired before the period: excluded
    _alert(conn, "a6", "critical", "site-1", T - timedelta(days=3), resolved=T - timedelta(days=3, seconds=-30))
    _event(conn, "a6", T - timedelta(days=3), None, "firing")
    conn.commit()


def test_mtta_mttr_by_severity_and_site(sla_url):
    with psycopg.connect(sla_url) as conn:
        seed_alerts(conn)
        period = parse_period("2026-01-05", "UTC")
        alerts, events = load_alerts(conn, TENANT, period.start, period.end)
    t = alert_timings(alerts, events).filter(pl.col("fired_at") >= period.start)
    assert sorted(t["alert_id"]) == ["a1", "a2", "a3", "a5"]
    by = {(r["group_by"], r["group"]): r for r in response_times(t).to_dicts()}
    crit = by[("severity", "critical")]
    assert (crit["alerts"], crit["acknowledged"], crit["resolved"]) == (3, 3, 2)
    assert crit["mtta_s"] == pytest.approx((120 + 300 + 60) / 3)
    assert crit["mttr_s"] == pytest.approx((600 + 1800) / 2)
    warn = by[("severity", "warning")]
    assert warn["alerts"] == 1 and warn["mtta_s"] is None and warn["mttr_s"] == pytest.approx(60)
    s1 = by[("site", "site-1")]
    assert s1["alerts"] == 3 and s1["mtta_s"] == pytest.approx(90) and s1["mttr_s"] == pytest.approx(330)
    assert by[("all", "all")]["alerts"] == 4
    assert dict(zip(t["alert_id"], t["responder"]))["a2"] == "bob"


# ------------------------------------------------------------------ outputs


def test_csv_json_html_outputs(sla_url, tmp_path):
    period, _, _ = seed_tenant(sla_url)
    with psycopg.connect(sla_url) as conn:
        seed_alerts(conn)
        report = build_sla_report(conn, TENANT, PERIOD, now=period.end + timedelta(days=1))
    files = write_report(report, tmp_path, ["csv", "json", "html"])
    names = {f.name for f in files}
    assert {f"sla-{TENANT}-{PERIOD}.json", f"sla-{TENANT}-{PERIOD}.html", f"sla-{TENANT}-{PERIOD}-devices.csv",
            f"sla-{TENANT}-{PERIOD}-incidents.csv", f"sla-{TENANT}-{PERIOD}-response_times.csv"} <= names

    with open(tmp_path / f"sla-{TENANT}-{PERIOD}-devices.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {"availability_pct", "completeness_pct", "meets_target"} <= set(rows[0])
    by_dev = {r["device_id"]: float(r["availability_pct"]) for r in rows}
    assert by_dev == dict(zip(report.avail.devices["device_id"], report.avail.devices["availability_pct"]))
    with open(tmp_path / f"sla-{TENANT}-{PERIOD}-incidents.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == report.avail.incidents.height == 4

    doc = json.loads((tmp_path / f"sla-{TENANT}-{PERIOD}.json").read_text())
    assert doc["summary"]["availability_pct"] == report.summary()["availability_pct"]
    assert doc["summary"]["time_zone"] == ZONE and len(doc["incidents"]) == 4 and len(doc["timeline"]) == 24
    assert {r["group"] for r in doc["response_times"] if r["group_by"] == "severity"} == {"critical", "warning"}

    html = (tmp_path / f"sla-{TENANT}-{PERIOD}.html").read_text()
    for needle in ('<svg id="chart-timeline"', '<svg id="chart-sites"', '<svg id="chart-response"',
                   'class="target"', '<table class="sites"', '<table class="devices"', '<table class="incidents"',
                   '<table class="response"', "pump-00000", "chiller-00001", ZONE):
        assert needle in html, needle
    assert html.count("<rect") >= 24 + 2  # one bar per hour and per site
    # self-contained: no scripts, no external resources
    assert "<script" not in html and "src=" not in html and "<link" not in html


def test_write_report_rejects_unknown_format(tmp_path):
    from assets.sla import _ALERT_SCHEMA, _EVENT_SCHEMA, TS, sla_report_from_frames

    period = parse_period("2026-01-05", "UTC")
    empty = pl.DataFrame(schema={"device_id": pl.String, "time": TS})
    devs = pl.DataFrame(schema={"device_id": pl.String, "site_id": pl.String, "device_type": pl.String})
    report = sla_report_from_frames("t", period, empty, devs, pl.DataFrame(schema=_ALERT_SCHEMA),
                                    pl.DataFrame(schema=_EVENT_SCHEMA), now=period.end)
    with pytest.raises(UserError):
        write_report(report, tmp_path, ["pdf"])
    assert report.summary()["availability_pct"] is None  # no devices: no number, not 100 %
    with pytest.raises(ValueError):
        ReportSettings(folder="s3://bucket/x")
