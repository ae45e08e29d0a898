"""`pulse demo`: the whole platform end to end on one machine.

Database (embedded unless PULSE_DATABASE_URL is set) → a demo configuration (2 tenants,
3 sites, devices of 3 types, threshold/window/absence/anomaly rules, a webhook and an
e-mail channel to local sinks, an escalation policy and an on-call schedule) → simulated
history with injected incidents → Dagster assets (lake export, rollups, health, SLA) →
live simulation through ingest + alerting + delivery → a summary. Without --headless it
also starts Dagster and Streamlit and runs until Ctrl-C.

Like the CLI, this module is a composition root: it wires every package together, so it
imports them inside functions (the kernel itself depends on none of them).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from pulse import db, simulate, simulator
from pulse.settings import get_settings

TENANTS = {"acme": ("Europe/Berlin", ["berlin", "hamburg"]), "globex": ("America/Chicago", ["austin"])}
WEBHOOK_KEY_ENV = "PULSE_DEMO_WEBHOOK_KEY"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # Dagster logs every step at DEBUG


@dataclass
class DemoOptions:
    devices: int = 500
    history_days: float = 14.0
    history_interval_s: float = 300.0
    duration_s: float | None = None
    rate: float = 200.0
    headless: bool = False


# ------------------------------------------------------------------ local sinks


class WebhookSink:
    """A local HTTP receiver standing in for the on-call team's webhook endpoint."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                sink.received.append({"headers": dict(self.headers), "body": body})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/pulse"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


class MailSink:
    """A local SMTP server (aiosmtpd) that keeps what it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Message

        self.messages: list = []
        sink = self

        class Keep(Message):
            def handle_message(self, message):
                sink.messages.append(message)

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = Controller(Keep(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


# ------------------------------------------------------------------ configuration


def demo_fleet(n: int) -> list[simulator.SimDevice]:
    fleet = simulator.make_fleet(n, tenants=tuple(TENANTS), sites_per_tenant=0, seed=2026)
    out, seen = [], {tenant: 0 for tenant in TENANTS}
    for dev in fleet:
        sites = TENANTS[dev.tenant_id][1]
        site = sites[seen[dev.tenant_id] % len(sites)]
        seen[dev.tenant_id] += 1
        out.append(simulator.SimDevice(dev.tenant_id, dev.device_id, dev.device_type, site,
                                       dev.phase, dev.scale, dev.seed))
    return out


def demo_config(fleet, webhook_url: str, smtp_port: int) -> dict:
    tenants = []
    for tenant, (zone, sites) in TENANTS.items():
        tenants.append({
            "id": tenant, "name": tenant.title(), "time_zone": zone,
            "sites": [{"id": s, "name": s.title(), "location": loc} for s, loc in zip(
                sites, [{"lat": 52.52, "lon": 13.40}, {"lat": 53.55, "lon": 9.99}] if tenant == "acme"
                else [{"lat": 30.27, "lon": -97.74}])],
            "devices": [{"id": d.device_id, "site": d.site_id, "type": d.device_type,
                         "tags": {"fw": "1.4.2" if j % 3 else "1.3.9"}}
                        for j, d in enumerate(fleet) if d.tenant_id == tenant],
        })
    return {
        "tenants": tenants,
        "users": [
            {"id": "alice", "name": "Alice", "email": "alice@example.com",
             "contact": [{"channel": "oncall-email", "address": "alice@example.com"}]},
            {"id": "bob", "name": "Bob", "email": "bob@example.com",
             "contact": [{"channel": "oncall-email", "address": "bob@example.com"}]},
        ],
        "channels": [
            {"id": "ops-webhook", "type": "webhook", "url": webhook_url, "signing_keys": [{"env": WEBHOOK_KEY_ENV}]},
            {"id": "oncall-email", "type": "email", "host": "127.0.0.1", "port": smtp_port, "security": "none",
             "from_addr": "pulse@example.com", "to": ["ops@example.com"]},
        ],
        "rules": [
            {"id": "pump-overheat", "name": "Pump overheating", "kind": "threshold", "metric": "temp_c",
             "op": ">", "value": 60, "clear": 55, "severity": "critical", "target": {"device_type": "pump"}},
            {"id": "pump-vibration", "name": "Pump vibration high (5 min average)", "kind": "window",
             "metric": "vibration_mm_s", "agg": "avg", "window": "5m", "op": ">", "value": 3.5,
             "severity": "warning", "target": {"device_type": "pump"}},
            {"id": "chiller-supply-hot", "name": "Chiller supply temperature high", "kind": "threshold",
             "metric": "supply_temp_c", "op": ">", "value": 10, "for": "30s", "severity": "warning",
             "target": {"device_type": "chiller"}},
            {"id": "device-silent", "name": "Device silent", "kind": "absence", "duration": "10m",
             "severity": "warning"},
            {"id": "pump-temp-anomaly", "name": "Pump temperature anomaly", "kind": "anomaly",
             "metric": "temp_c", "threshold": 0.95, "severity": "info", "shadow": True,
             "target": {"device_type": "pump"}},
        ],
        "routes": [
            {"id": "critical", "match": {"severity": "critical"}, "channels": ["ops-webhook"],
             "escalation": "default", "continue": True},
            {"id": "everything", "match": {}, "channels": ["ops-webhook"], "group_by": ["rule", "site"],
             "group_wait": "10s"},
        ],
        "escalation_policies": [
            {"id": "default", "name": "Page the on-call engineer, then Bob",
             "levels": [{"delay": "0", "targets": [{"schedule": "primary"}]},
                        {"delay": "10m", "targets": [{"user": "bob"}]}]},
        ],
        "schedules": [
            {"id": "primary", "name": "Primary on-call", "time_zone": "Europe/Berlin",
             "layers": [{"name": "daily", "users": ["alice", "bob"], "rotation": "1d", "start": "2026-11-02T09:00:00"}]},
        ],
    }


# ------------------------------------------------------------------ steps


def _materialize(url: str, lake_dir: Path, hours: list[datetime], console: Console) -> int:
    """Run the Dagster assets in-process for the most recent hours of history."""
    import dagster as dg

    from assets.defs_lake import lake_export
    from assets.defs_rollups import rollups_1h, rollups_1m
    from pipelines.resources import PulseDatabase, PulseLake

    resources = {"db": PulseDatabase(url=url), "lake": PulseLake(lake_dir=str(lake_dir))}
    materialized = 0
    with (warnings.catch_warnings(), dg.instance_for_test() as instance,
          Progress(console=console, transient=True) as progress):
        # one ad-hoc job over assets with different backfill policies: Dagster warns, harmlessly
        warnings.filterwarnings("ignore", message=".*varying BackfillPolicies")
        task = progress.add_task("materializing Dagster assets (lake export, rollups)", total=len(hours))
        for hour in hours:
            key = hour.strftime("%Y-%m-%d-%H:%M")
            result = dg.materialize([lake_export, rollups_1m, rollups_1h], partition_key=key, instance=instance,
                                    resources=resources, raise_on_error=False, run_config=QUIET)
            materialized += len(result.get_asset_materialization_events())
            progress.advance(task)
    return materialized


def _sla(url: str, day: datetime) -> dict:
    from assets.sla_delivery import run_sla_report

    out = {}
    with db.connect(url) as conn:
        for tenant in TENANTS:
            report = run_sla_report(conn, tenant, day.strftime("%Y-%m-%d"), formats=["json", "html"],
                                    deliver=False, triggered_by="demo")
            out[tenant] = report
    return out


def _start_uis(url: str, console: Console) -> list[subprocess.Popen]:
    """Dagster (webserver + daemon) and Streamlit, started as `pulse up` starts them; logs in PULSE_HOME/logs."""
    from pulse import supervisor

    plan = supervisor.plan(get_settings(), url, ["dagster-webserver", "dagster-daemon", "app"])
    procs = [supervisor.spawn(spec, plan.home) for spec in plan.specs]
    for note in plan.notes:
        console.print(f"note: {note}")
    for spec in plan.specs:
        if spec.url:
            console.print(f"{spec.name}: {spec.url}  ({spec.about})")
    return procs


def run(options: DemoOptions, console: Console) -> dict:
    from alerting import config as platform_config
    from alerting.notify import Worker
    from alerting.service import AlertService
    from ingest.service import IngestService

    settings = get_settings()
    started = time.perf_counter()
    os.environ.setdefault(WEBHOOK_KEY_ENV, secrets.token_hex(16))
    with console.status("starting the database (embedded when PULSE_DATABASE_URL is unset)"):
        url = db.database_url()
        db.migrate(url)
    webhook, mail = WebhookSink(), MailSink()
    uis: list[subprocess.Popen] = []
    try:
        fleet = demo_fleet(options.devices)
        cfg = platform_config.PlatformConfig.model_validate(demo_config(fleet, webhook.url, mail.port))
        with db.connect(url) as conn:
            platform_config.apply(conn, cfg)
        console.print(f"configured {len(TENANTS)} tenants, 3 sites, {len(fleet)} devices, {len(cfg.rules)} rules, "
                      f"{len(cfg.channels)} channels (webhook → {webhook.url}, e-mail → 127.0.0.1:{mail.port})")

        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        start = end - timedelta(days=options.history_days)
        live_end = datetime.now(UTC) + timedelta(seconds=options.duration_s or 3600)
        faults = simulator.plan_faults(fleet, start, live_end, per_device_day=0.15, seed=11)
        # incidents during the live run so the alert path has something to do right away
        now = datetime.now(UTC)
        pumps = [d for d in fleet if d.device_type == "pump"][:3]
        faults += [simulator.Fault(d.tenant_id, d.device_id, "temp_c", "level_shift", now + timedelta(seconds=5),
                                   now + timedelta(seconds=(options.duration_s or 60) * 0.6), 8.0) for d in pumps]
        truth = settings.home / "demo-truth.jsonl"
        truth.parent.mkdir(parents=True, exist_ok=True)
        simulator.write_truth(faults, truth)
        with db.connect(url) as conn:
            tokens = simulate.provision(conn, fleet, issue_tokens=True)
            total = simulate.points(fleet, start, end, options.history_interval_s)
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task(f"backfilling {options.history_days:g} days of history", total=total)
                backfilled = simulate.backfill(conn, fleet, start, end, interval_s=options.history_interval_s,
                                               faults=faults, progress=lambda n: progress.advance(task, n))
        console.print(f"backfilled {backfilled.rows:,} rows ({backfilled.rows_per_s:,.0f} rows/s); "
                      f"injected incidents → {truth}")

        hours = [end - timedelta(hours=h) for h in range(3, 0, -1)]
        assets_materialized = _materialize(url, settings.lake_path, hours, console)
        yesterday = (end - timedelta(days=1)).replace(hour=0)
        sla = _sla(url, yesterday) if options.history_days >= 1 else {}
        console.print(f"Dagster: {assets_materialized} asset materializations; " + (
            f"SLA reports for {yesterday.date()} written to {settings.home / 'reports'}" if sla
            else "no SLA report (less than a day of history)"))

        if not options.headless:
            uis = _start_uis(url, console)

        alerts = AlertService(url)
        service = IngestService(settings, url, mqtt_url=settings.mqtt_url, http_port=_free_port(settings),
                                worker_id="demo", listeners=[alerts])
        service.start()
        stop = threading.Event()
        notifier = Worker(url, worker_id="demo")
        notify_thread = threading.Thread(target=notifier.run, args=(stop,), daemon=True)
        notify_thread.start()
        console.print(f"ingest on http://{settings.http_host}:{service.http_port}/v1/telemetry"
                      f"{' and MQTT ' + settings.mqtt_url if settings.mqtt_url else ''}; alert engine and "
                      f"delivery worker running")
        label = f"{options.duration_s:g} s" if options.duration_s else "until Ctrl-C"
        console.print(f"streaming live telemetry at {options.rate:g} envelopes/s ({label})")
        try:
            duration = options.duration_s if options.duration_s else float("inf")
            if settings.mqtt_url:
                live = simulate.run_mqtt(settings.mqtt_url, fleet, rate=options.rate, duration_s=duration,
                                         faults=faults, stop=stop, client_id="pulse-demo-sim")
            else:
                live = simulate.run_http(f"http://{settings.http_host}:{service.http_port}", fleet, tokens,
                                         rate=options.rate, duration_s=duration, faults=faults, stop=stop)
        except KeyboardInterrupt:
            live = None
        finally:
            service.stop()  # flushes ingest, then stops the alert engine
            time.sleep(1.0)
            notifier.drain()
            stop.set()
            notify_thread.join(10)
            notifier.close()
        return _summary(url, backfilled.rows, service, live, assets_materialized, sla, webhook, mail,
                        time.perf_counter() - started)
    finally:
        if uis:
            from pulse import supervisor

            supervisor.stop_groups(uis, timeout=15)
        webhook.close()
        mail.close()


def _free_port(settings) -> int:
    with socket.socket() as s:
        try:
            s.bind((settings.http_host, settings.http_port))
            return settings.http_port
        except OSError:
            pass
    with socket.socket() as s:
        s.bind((settings.http_host, 0))
        return s.getsockname()[1]


def _summary(url, backfilled, service, live, assets_materialized, sla, webhook, mail, seconds) -> dict:
    with db.connect(url) as conn:
        fired = conn.execute("select count(distinct alert_id) from alert_events where to_state = 'firing'").fetchone()[0]
        by_rule = dict(conn.execute(
            "select rule_id, count(*) from alerts where state <> 'pending' group by rule_id order by 2 desc").fetchall())
        delivered = conn.execute("select count(*) from deliveries where status = 'sent'").fetchone()[0]
        dead = conn.execute("select count(*) from deliveries where status = 'dead'").fetchone()[0]
    return {
        "rows_backfilled": backfilled,
        "rows_ingested": service.writer.totals.inserted,
        "live_envelopes_sent": live.sent if live else None,
        "quarantined": service.writer.totals.quarantined,
        "alerts_fired": fired,
        "alerts_by_rule": by_rule,
        "notifications_delivered": delivered,
        "notifications_dead": dead,
        "webhook_requests_received": len(webhook.received),
        "emails_received": len(mail.messages),
        "assets_materialized": assets_materialized,
        "sla": {tenant: run.summary for tenant, run in sla.items()},
        "seconds": round(seconds, 1),
    }
