"""SLA report runs end to end: `report` CLI (typer CliRunner), folder + webhook (real local
HTTP receiver) + email (aiosmtpd) delivery, report_runs bookkeeping, Dagster asset + schedule logic."""

import json
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy

import psycopg
import pytest
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from alerting.channels.webhook import verify_signature
from assets.report_cli import report_app
from assets.sla import save_report_settings
from assets.sla_delivery import run_sla_report
from pulse.errors import UserError
from tests.alerting.channels.receivers import HttpReceiver, Reply, free_port
from tests.assets.test_sla_helpers import PERIOD, TENANT, clear_reports, seed_tenant

KEY = "report-signing-key"


@pytest.fixture
def seeded(pg_url):
    clear_reports(pg_url)
    period, _, _ = seed_tenant(pg_url)
    return pg_url, period


@pytest.fixture
def receiver():
    r = HttpReceiver()
    yield r
    r.close()


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    class Sink:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            self.messages.append((list(envelope.rcpt_tos), envelope.content))
            return "250 OK"

    sink = Sink()
    sink.port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    yield sink
    controller.stop()


def _channels(conn, receiver_url, smtp_port):
    for cid, definition in (
            ("hook", {"id": "hook", "type": "webhook", "url": receiver_url + "/reports",
                      "signing_keys": [{"env": "REPORT_HOOK_KEY"}]}),
            ("mail", {"id": "mail", "type": "email", "host": "127.0.0.1", "port": smtp_port, "security": "none",
                      "from_addr": "pulse@example.com", "to": ["ops@example.com"], "timeout_s": 5})):
        conn.execute("insert into config_objects (kind, id, definition) values ('channel', %s, %s)",
                     (cid, Jsonb(definition)))
    conn.commit()


def test_delivery_to_folder_webhook_and_email(seeded, receiver, smtp_server, tmp_path, monkeypatch):
    url, period = seeded
    monkeypatch.setenv("REPORT_HOOK_KEY", KEY)
    with psycopg.connect(url) as conn:
        _channels(conn, receiver.url, smtp_server.port)
        save_report_settings(conn, TENANT, {
            "folder": str(tmp_path / "share"), "formats": ["json", "html"],
            "email": {"channel": "mail", "recipients": ["sla@example.com", "boss@example.com"]},
            "webhook": {"channel": "hook", "link_base": "https://reports.example/acme"}})
        out = run_sla_report(conn, TENANT, PERIOD, out_dir=tmp_path / "out", now=period.end + timedelta(hours=6))
        row = conn.execute("select status, formats, path, delivered_to, error, finished_at, summary from report_runs "
                           "where run_id = %s", (out.run_id,)).fetchone()
    assert out.status == "succeeded"
    assert row[0] == "succeeded" and row[1] == ["json", "html"] and row[4] is None and row[5] is not None
    assert row[2] == str(tmp_path / "out" / TENANT)
    assert {(d["kind"], d["ok"]) for d in row[3]} == {("email", True), ("webhook", True)}
    # written to the requested dir and, always, to the tenant's folder
    for base in (tmp_path / "out" / TENANT, tmp_path / "share" / TENANT):
        assert (base / f"sla-{TENANT}-{PERIOD}.html").stat().st_size > 1000
        assert (base / f"sla-{TENANT}-{PERIOD}.json").exists()
    # webhook: signed like alert webhooks, JSON summary + link
    (req,) = receiver.requests
    assert req.path == "/reports" and req.headers["X-Pulse-Event"] == "report"
    assert verify_signature(req.body, dict(req.headers), KEY)
    body = json.loads(req.body)
    assert body["summary"]["tenant_id"] == TENANT and body["summary"]["period"] == PERIOD
    assert body["summary"]["availability_pct"] == row[6]["availability_pct"]
    assert body["link"] == f"https://reports.example/acme/sla-{TENANT}-{PERIOD}.html"
    # email: one message to the subscription's recipients, HTML report attached
    (rcpts, raw), = smtp_server.messages
    assert sorted(rcpts) == ["boss@example.com", "sla@example.com"]
    msg = message_from_bytes(raw, policy=default_policy)
    assert "SLA report acme 2026-01-05" in msg["Subject"]
    (att,) = list(msg.iter_attachments())
    assert att.get_filename() == f"sla-{TENANT}-{PERIOD}.html"
    assert '<svg id="chart-timeline"' in att.get_content()
    assert "Availability:" in msg.get_body(("plain",)).get_content()


def test_failed_webhook_is_recorded(seeded, receiver, tmp_path, monkeypatch):
    url, period = seeded
    monkeypatch.setenv("REPORT_HOOK_KEY", KEY)
    receiver.default = Reply(status=500, body=b"boom")
    with psycopg.connect(url) as conn:
        _channels(conn, receiver.url, 1)
        save_report_settings(conn, TENANT, {"webhook": {"channel": "hook"}, "formats": ["json"]})
        out = run_sla_report(conn, TENANT, PERIOD, out_dir=tmp_path, now=period.end + timedelta(hours=6))
        status, delivered, error = conn.execute(
            "select status, delivered_to, error from report_runs where run_id = %s", (out.run_id,)).fetchone()
    assert status == "delivery_failed" and delivered[0]["ok"] is False and "HTTP 500" in error
    assert (tmp_path / TENANT / f"sla-{TENANT}-{PERIOD}.json").exists()  # the folder copy still happened
    # link falls back to the file path without link_base
    assert json.loads(receiver.requests[0].body)["link"].endswith(f"sla-{TENANT}-{PERIOD}.json")


def test_cli_report_sla(seeded, tmp_path, monkeypatch, pulse_env):
    url, _ = seeded
    monkeypatch.setenv("PULSE_DATABASE_URL", url)
    runner = CliRunner()
    res = runner.invoke(report_app, ["sla", "--tenant", TENANT, "--period", PERIOD, "--format", "csv,json",
                                     "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["status"] == "succeeded" and doc["summary"]["devices"] == 4
    assert (tmp_path / TENANT / f"sla-{TENANT}-{PERIOD}-devices.csv").exists()
    assert not (tmp_path / TENANT / f"sla-{TENANT}-{PERIOD}.html").exists()
    monthly = runner.invoke(report_app, ["sla", "--tenant", TENANT, "--period", "2026-01", "--format", "html",
                                         "--out", str(tmp_path)])
    assert monthly.exit_code == 0, monthly.output
    assert (tmp_path / TENANT / f"sla-{TENANT}-2026-01.html").exists()
    runs = json.loads(runner.invoke(report_app, ["runs", "--tenant", TENANT]).stdout)
    assert [r["period"] for r in runs] == ["2026-01", PERIOD] and runs[1]["formats"] == ["csv", "json"]
    # user mistakes: UserError (pulse.cli.main prints it and exits 2), and no run recorded
    for args, needle in ((["--period", "2026-13"], "invalid month"), (["--period", "2026-1-5"], "YYYY-MM"),
                         (["--period", PERIOD, "--format", "pdf"], "pdf")):
        res = runner.invoke(report_app, ["sla", "--tenant", TENANT, "--out", str(tmp_path), *args])
        assert isinstance(res.exception, UserError) and needle in str(res.exception), args
    res = runner.invoke(report_app, ["sla", "--tenant", "nope", "--period", PERIOD])
    assert isinstance(res.exception, UserError) and "unknown tenant" in str(res.exception)
    assert len(json.loads(runner.invoke(report_app, ["runs"]).stdout)) == 2


def test_schedule_picks_tenants_at_local_six():
    from assets.defs_sla import tenants_due

    tenants = [("berlin", "Europe/Berlin"), ("delhi", "Asia/Kolkata"), ("utc", "UTC"), ("akl", "Pacific/Auckland")]
    # 2026-01-05 05:05 UTC = 06:05 Berlin (CET), 10:35 Delhi, 18:05 Auckland
    assert tenants_due(tenants, datetime(2026, 1, 5, 5, 5, tzinfo=UTC), "daily") == {"2026-01-04": ["berlin"]}
    # 00:35 UTC = 06:05 Delhi (+05:30)
    assert tenants_due(tenants, datetime(2026, 1, 5, 0, 35, tzinfo=UTC), "daily") == {"2026-01-04": ["delhi"]}
    # Auckland (+13 in January) reaches 06:00 on the 5th while UTC is still on the 4th
    assert tenants_due(tenants, datetime(2026, 1, 4, 17, 5, tzinfo=UTC), "daily") == {"2026-01-04": ["akl"]}
    # every tenant is due exactly once per day, whatever its offset
    hits = {}
    for h in range(24):
        for key, ts in tenants_due(tenants, datetime(2026, 7, 1, h, 35, tzinfo=UTC), "daily").items():
            for t in ts:
                hits[t] = hits.get(t, 0) + 1
    assert hits == {t: 1 for t, _ in tenants}
    # monthly: only on the local 1st
    assert tenants_due(tenants, datetime(2026, 2, 1, 6, 5, tzinfo=UTC), "monthly") == {"2026-01-01": ["utc"]}
    assert tenants_due(tenants, datetime(2026, 2, 2, 6, 5, tzinfo=UTC), "monthly") == {}


def test_dagster_daily_asset_materializes_with_checks(seeded, tmp_path):
    import dagster as dg

    from assets.defs_sla import sla_report_daily
    from pipelines.resources import AnalyticsSettings, PulseDatabase, PulseLake

    url, _ = seeded
    with psycopg.connect(url) as conn:
        save_report_settings(conn, TENANT, {"folder": str(tmp_path), "formats": ["json"]})
    result = dg.materialize(
        [sla_report_daily], partition_key=PERIOD,
        resources={"db": PulseDatabase(url=url), "lake": PulseLake(lake_dir=str(tmp_path / "lake")),
                   "analytics": AnalyticsSettings()},
        run_config={"ops": {"sla_report_daily": {"config": {"tenants": [TENANT]}}}})
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"availability_in_range": True, "incidents_match_downtime": True, "files_written": True,
                      "deliveries_ok": True}
    assert (tmp_path / TENANT / f"sla-{TENANT}-{PERIOD}.json").exists()
    with psycopg.connect(url) as conn:
        (n, trig), = conn.execute("select count(*), min(triggered_by) from report_runs").fetchall()
        recorded = conn.execute("select count(*) from asset_check_results where asset_key = 'sla_report_daily'").fetchone()[0]
    assert n == 1 and trig.startswith("dagster:") and recorded == 4
