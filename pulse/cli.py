"""The `pulse` command line. User mistakes print one clear message and exit 2; no tracebacks.

Subcommands import their heavy dependencies lazily so `pulse --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from pulse.errors import UserError

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="OpsConductor Pulse: IoT telemetry and alerting data platform.")
db_app = typer.Typer(no_args_is_help=True, help="Database: migrations and the embedded server.")
devices_app = typer.Typer(no_args_is_help=True, help="Device registry and provisioning.")
config_app = typer.Typer(no_args_is_help=True, help="Declarative configuration (YAML).")
quarantine_app = typer.Typer(no_args_is_help=True, help="Telemetry that was rejected, with the reason.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (print JSON).")
app.add_typer(db_app, name="db")
app.add_typer(devices_app, name="devices")
app.add_typer(config_app, name="config")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(bench_app, name="bench")


# Commands that live with their package, mounted only when asked for (or for --help):
# importing them pulls in scikit-learn, pysnmp and friends, start-up that every other
# command should not pay. Each module offers `register(app)`.
PLUGINS = {
    "detectors": "detectors.cli",
    "alerts": "alerting.cli", "silences": "alerting.cli", "rules": "alerting.cli",
    "notify": "alerting.notify_cli", "deliveries": "alerting.notify_cli", "oncall": "alerting.notify_cli",
    "app": "app.cli",
    "report": "assets.report_cli",
}


def _mount_optional() -> None:
    import importlib

    wanted = sys.argv[1] if len(sys.argv) > 1 else "--help"
    modules = set(PLUGINS.values()) if wanted.startswith("-") else {PLUGINS.get(wanted)} - {None}
    for name in sorted(modules):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that part of the platform is not built yet
                continue
            raise
        module.register(app)


def _connect():
    from pulse import db

    return db.connect()


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# ------------------------------------------------------------------ db


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending schema migrations (idempotent)."""
    from pulse import db

    applied = db.migrate()
    status = db.schema_status()
    store = "TimescaleDB hypertable" if status["timescaledb"] else "plain tables + BRIN (no TimescaleDB)"
    if applied:
        for m in applied:
            console.print(f"applied {m.version:04d}_{m.name}")
    else:
        console.print("schema is up to date")
    console.print(f"telemetry store: {store}; database {status['url']}")


@db_app.command("status")
def db_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the database, its store type and migration state."""
    from pulse import db

    status = db.schema_status()
    if as_json:
        _print_json(status)
    else:
        for key, value in status.items():
            console.print(f"{key}: {value}")


@db_app.command("url")
def db_url() -> None:
    """Print the database URL (starts the embedded server when PULSE_DATABASE_URL is unset)."""
    from pulse import db

    print(db.database_url())


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL server under PULSE_HOME."""
    from pulse import db

    console.print("embedded server stopped" if db.stop_embedded() else "no embedded server running")


# ------------------------------------------------------------------ devices


def _show_tokens(tokens, out: Path | None) -> None:
    from pulse import registry

    if not tokens:
        return
    if out is not None:
        registry.write_tokens_csv(tokens, out)
        console.print(f"{len(tokens)} new token(s) written to {out} (mode 600); they are not shown again")
        return
    table = Table(title="device tokens: shown once, store them now")
    for col in ("tenant", "device", "token"):
        table.add_column(col)
    for t in tokens:
        table.add_row(t.tenant_id, t.device_id, t.token)
    console.print(table)


def _parse_tag_options(tags: list[str]) -> dict[str, str]:
    out = {}
    for tag in tags:
        if "=" not in tag:
            raise UserError(f"--tag {tag!r} must be key=value")
        k, v = tag.split("=", 1)
        out[k] = v
    return out


@devices_app.command("add")
def devices_add(
    tenant: Annotated[str, typer.Option(help="tenant id")],
    device_id: Annotated[str, typer.Argument(help="device id (letters, digits, . _ : -)")],
    site: Annotated[Optional[str], typer.Option(help="site id")] = None,
    device_type: Annotated[Optional[str], typer.Option("--type", help="device type")] = None,
    name: Annotated[Optional[str], typer.Option()] = None,
    tag: Annotated[list[str], typer.Option(help="key=value (repeatable)")] = [],
) -> None:
    """Register a device and print its token (shown once)."""
    from pulse import registry

    with _connect() as conn:
        issued = registry.add_device(conn, registry.Device(tenant, device_id, site, device_type, name,
                                                           _parse_tag_options(tag)))
    console.print(f"device {tenant}/{device_id} registered")
    _show_tokens([issued], None)


@devices_app.command("import")
def devices_import(
    csv_file: Annotated[Path, typer.Argument(help="CSV: tenant_id,device_id,site_id,device_type,name,tags")],
    tenant: Annotated[Optional[str], typer.Option(help="tenant for rows without tenant_id")] = None,
    tokens_out: Annotated[Optional[Path], typer.Option(help="write new tokens to this CSV instead of the screen")] = None,
) -> None:
    """Bulk-register devices from CSV (one transaction; new devices get tokens)."""
    from pulse import registry

    try:
        text = csv_file.read_text()
    except OSError as exc:
        raise UserError(f"cannot read {csv_file}: {exc.strerror}") from None
    devices = registry.read_device_csv(text, tenant)
    with _connect() as conn:
        tokens = registry.import_devices(conn, devices)
    console.print(f"{len(devices)} device(s) imported, {len(tokens)} new")
    _show_tokens(tokens, tokens_out)


@devices_app.command("rotate-token")
def devices_rotate(tenant: Annotated[str, typer.Option()], device_id: str) -> None:
    """Issue a new token; the old one stops working."""
    from pulse import registry

    with _connect() as conn:
        issued = registry.rotate_token(conn, tenant, device_id)
    _show_tokens([issued], None)


@devices_app.command("disable")
def devices_disable(tenant: Annotated[str, typer.Option()], device_id: str) -> None:
    """Refuse the device's telemetry (quarantined as device_disabled)."""
    from pulse import registry

    with _connect() as conn:
        registry.set_status(conn, tenant, device_id, "disabled")
    console.print(f"device {tenant}/{device_id} disabled")


@devices_app.command("enable")
def devices_enable(tenant: Annotated[str, typer.Option()], device_id: str) -> None:
    from pulse import registry

    with _connect() as conn:
        registry.set_status(conn, tenant, device_id, "active")
    console.print(f"device {tenant}/{device_id} enabled")


@devices_app.command("list")
def devices_list(
    tenant: Annotated[Optional[str], typer.Option()] = None,
    site: Annotated[Optional[str], typer.Option()] = None,
    status: Annotated[Optional[str], typer.Option()] = None,
    tag: Annotated[list[str], typer.Option(help="key=value (repeatable)")] = [],
    limit: int = 1000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List devices with their last-seen time."""
    from pulse import registry

    with _connect() as conn:
        rows = registry.list_devices(conn, tenant, site, status, _parse_tag_options(tag), limit)
    if as_json:
        _print_json(rows)
        return
    table = Table()
    for col in ("tenant", "device", "site", "type", "status", "tags", "last seen", "rows"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["tenant_id"], r["device_id"], r["site_id"] or "", r["device_type"] or "", r["status"],
                      ",".join(f"{k}={v}" for k, v in r["tags"].items()),
                      r["last_seen"].isoformat(timespec="seconds") if r["last_seen"] else "never",
                      str(r["rows"] or 0))
    console.print(table)


# ------------------------------------------------------------------ config


@config_app.command("apply")
def config_apply(
    file: Annotated[Path, typer.Argument(help="YAML configuration")],
    prune: Annotated[bool, typer.Option(help="delete sites/devices of listed tenants that the file omits")] = False,
    tokens_out: Annotated[Optional[Path], typer.Option(help="write new device tokens to this CSV")] = None,
) -> None:
    """Validate and apply a configuration file in one transaction."""
    from alerting import config

    cfg = config.load(file)
    with _connect() as conn:
        summary = config.apply(conn, cfg, prune=prune)
    objects = ", ".join(f"{n} {kind}(s)" for kind, n in summary["objects"].items())
    console.print(f"applied {file}: {summary['tenants']} tenant(s), {summary['sites']} site(s), "
                  f"{summary['devices']} device(s){', ' + objects if objects else ''}, {summary['pruned']} pruned")
    _show_tokens(summary["tokens"], tokens_out)


@config_app.command("validate")
def config_validate(file: Path) -> None:
    """Validate a configuration file without applying it."""
    from alerting import config

    cfg = config.load(file)
    console.print(f"{file} is valid: {len(cfg.tenants)} tenant(s)")


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of the configuration file."""
    from alerting import config

    _print_json(config.json_schema())


# ------------------------------------------------------------------ ingest


@app.command("ingest")
def ingest_cmd(
    mqtt: Annotated[Optional[str], typer.Option(help="broker URL (default PULSE_MQTT_URL; 'off' to disable)")] = None,
    http_port: Annotated[Optional[int], typer.Option(help="HTTP port (default PULSE_HTTP_PORT); 0 disables")] = None,
    worker_id: Annotated[Optional[str], typer.Option(help="stable id of this worker (MQTT session)")] = None,
    shards: Annotated[Optional[int], typer.Option(help="shard the MQTT ingest over this many virtual shards, "
                                                        "the same on every worker (default PULSE_SHARDS)")] = None,
    duration: Annotated[Optional[float], typer.Option(help="stop after this many seconds")] = None,
    retire: Annotated[bool, typer.Option(help="delete this worker's broker session (and backlog), then exit")] = False,
    alerts: Annotated[bool, typer.Option("--alerts/--no-alerts",
                                         help="evaluate alert rules on the ingest path (default on)")] = True,
) -> None:
    """Run the ingest service: MQTT shared subscription + HTTP POST /v1/telemetry (+ alert engine)."""
    from ingest.service import IngestService
    from pulse import db
    from pulse.logs import configure_logging
    from pulse.settings import get_settings

    configure_logging()
    settings = get_settings()
    if shards is not None:
        if not 1 <= shards <= 65536:
            raise UserError("--shards must be between 1 and 65536")
        settings = settings.model_copy(update={"shards": shards})
    mqtt_url = settings.mqtt_url if mqtt is None else (None if mqtt == "off" else mqtt)
    if retire:
        import socket

        from ingest.mqtt import drop_session

        if not mqtt_url:
            raise UserError("--retire needs the broker: set PULSE_MQTT_URL or --mqtt")
        client_id = f"{settings.mqtt_client_id}-{worker_id or socket.gethostname()}"
        drop_session(mqtt_url, client_id)
        err_console.print(f"session {client_id} deleted at the broker")
        return
    port = settings.http_port if http_port is None else (http_port or None)
    url = db.database_url()
    db.migrate(url)
    listeners = []
    if alerts:
        from alerting.service import AlertService

        listeners.append(AlertService(url, shards=settings.shards if mqtt_url else None))
    service = IngestService(settings, url, mqtt_url=mqtt_url, http_port=port, worker_id=worker_id,
                            listeners=listeners)
    err_console.print(f"ingest: MQTT {'on ' + mqtt_url if mqtt_url else 'off (PULSE_MQTT_URL unset)'}"
                      f"{f' ({settings.shards} shards)' if mqtt_url and settings.shards else ''}, "
                      f"HTTP {'http://%s:%d/v1/telemetry' % (settings.http_host, port) if port else 'off'}, "
                      f"alerts {'on' if alerts else 'off'}")
    service.run_until_signalled(duration)


# ------------------------------------------------------------------ quarantine


@quarantine_app.command("list")
def quarantine_list(
    reason: Annotated[Optional[str], typer.Option()] = None,
    tenant: Annotated[Optional[str], typer.Option()] = None,
    limit: int = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent quarantined payloads, newest first, with counts by reason."""
    from pulse import quarantine

    with _connect() as conn:
        counts = quarantine.counts(conn, tenant)
        rows = quarantine.recent(conn, reason=reason, tenant_id=tenant, limit=limit)
    if as_json:
        _print_json({"counts": counts, "items": rows})
        return
    console.print("by reason: " + (", ".join(f"{k}={v}" for k, v in counts.items()) or "none"))
    table = Table()
    for col in ("id", "received", "transport", "tenant/device", "reason", "detail", "payload"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r["id"]), r["received_at"].isoformat(timespec="seconds"), r["transport"],
                      f"{r['tenant_id'] or '-'}/{r['device_id'] or '-'}", r["reason"], (r["detail"] or "")[:80],
                      r["payload_preview"])
    console.print(table)


# ------------------------------------------------------------------ simulate


@app.command("simulate")
def simulate_cmd(
    devices: Annotated[int, typer.Option(min=1, help="fleet size")] = 100,
    rate: Annotated[float, typer.Option(min=0, help="envelopes per second across the fleet (live)")] = 100.0,
    duration: Annotated[float, typer.Option(min=0, help="seconds of live simulation")] = 60.0,
    transport: Annotated[str, typer.Option(help="mqtt or http")] = "mqtt",
    backfill: Annotated[Optional[float], typer.Option(help="days of history to write first (COPY)")] = None,
    interval: Annotated[float, typer.Option(help="seconds between readings in backfill")] = 60.0,
    tenant: Annotated[list[str], typer.Option(help="tenant(s) to spread the fleet over")] = ["sim"],
    faults_per_day: Annotated[float, typer.Option(help="injected faults per device-day")] = 0.05,
    dropout: Annotated[float, typer.Option(help="share of messages lost at random")] = 0.001,
    truth: Annotated[Optional[Path], typer.Option(help="write injected faults (ground truth) here, JSON lines")] = None,
    seed: int = 42,
) -> None:
    """Simulate a fleet: optional history backfill, then live telemetry over MQTT or HTTP."""
    from datetime import timedelta

    from rich.progress import Progress

    from pulse import db, simulate, simulator
    from pulse.settings import get_settings

    if transport not in ("mqtt", "http"):
        raise UserError("--transport must be mqtt or http")
    settings = get_settings()
    fleet = simulator.make_fleet(devices, tenants=tenant, seed=seed)
    url = db.database_url()
    db.migrate(url)
    start_hist, end_hist = simulate.history_window(backfill or 0)
    live_end = simulator.utcnow() + timedelta(seconds=duration)
    faults = simulator.plan_faults(fleet, start_hist, live_end, per_device_day=faults_per_day, seed=seed)
    if truth:
        simulator.write_truth(faults, truth)
        console.print(f"ground truth: {len(faults)} injected fault(s) → {truth}")
    with db.connect(url) as conn:
        tokens = simulate.provision(conn, fleet, issue_tokens=transport == "http")
        if backfill:
            total = simulate.points(fleet, start_hist, end_hist, interval)
            with Progress(console=err_console) as progress:
                task = progress.add_task(f"backfill {backfill:g} days", total=total)
                result = simulate.backfill(conn, fleet, start_hist, end_hist, interval_s=interval, faults=faults,
                                           dropout=dropout, progress=lambda n: progress.advance(task, n))
            console.print(f"backfilled {result.rows:,} rows in {result.seconds:.1f}s "
                          f"({result.rows_per_s:,.0f} rows/s)")
    if duration <= 0:
        return
    if transport == "mqtt":
        if not settings.mqtt_url:
            raise UserError("set PULSE_MQTT_URL (e.g. mqtt://127.0.0.1:1883) or use --transport http")
        stats = simulate.run_mqtt(settings.mqtt_url, fleet, rate=rate, duration_s=duration, faults=faults,
                                  dropout=dropout)
    else:
        stats = simulate.run_http(f"http://{settings.http_host}:{settings.http_port}", fleet, tokens, rate=rate,
                                  duration_s=duration, faults=faults, dropout=dropout)
    console.print(f"live: sent {stats.sent:,}, acknowledged {stats.acked:,}, failed {stats.failed:,}, "
                  f"offline/dropped {stats.skipped_offline:,} in {stats.seconds:.1f}s")


# ------------------------------------------------------------------ demo


@app.command("demo")
def demo_cmd(
    headless: Annotated[bool, typer.Option(help="no Dagster/Streamlit UIs; print a summary and exit")] = False,
    duration: Annotated[Optional[float], typer.Option(help="seconds of live simulation (default: until Ctrl-C)")] = None,
    devices: Annotated[int, typer.Option(min=3)] = 500,
    history_days: Annotated[float, typer.Option(min=0)] = 14.0,
    history_interval: Annotated[float, typer.Option(min=10, help="seconds between historic readings")] = 300.0,
    rate: Annotated[float, typer.Option(min=1, help="live envelopes per second")] = 200.0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run the platform end to end: config, history, Dagster assets, live ingest + alerting + delivery, UIs."""
    from pulse import demo
    from pulse.logs import configure_logging
    from pulse.settings import get_settings

    if headless and duration is None:
        duration = 60.0
    # The services' log lines would bury the progress, URLs and summary: they go to a file.
    logs = get_settings().home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_file = (logs / "demo.log").open("a", buffering=1)
    configure_logging(file=log_file)
    err_console.print(f"logs: {logs / 'demo.log'}")
    summary = demo.run(demo.DemoOptions(devices, history_days, history_interval, duration, rate, headless),
                       err_console)
    if as_json:
        _print_json(summary)
    else:
        for key, value in summary.items():
            console.print(f"{key}: {value}")


# ------------------------------------------------------------------ up / down / status


def _print_services(services: list[dict], title: str) -> None:
    from pulse.supervisor import uptime

    table = Table(title=title)
    for col in ("service", "pid", "state", "uptime", "restarts", "url", "log"):
        table.add_column(col, overflow="fold")
    for s in services:
        state = s["state"] + (f" (last exit {s['last_exit']})" if s.get("last_exit") not in (None, 0) else "")
        table.add_row(s["name"], str(s["pid"] or "-"), state, uptime(s["uptime_s"]), str(s["restarts"]),
                      s["url"] or "", s["log"])
    console.print(table)


@app.command("up")
def up_cmd(
    only: Annotated[Optional[str], typer.Option(
        help="comma-separated services: ingest, notify, dagster-webserver, dagster-daemon, app "
             "(aliases: dagster, streamlit, alerting); default all")] = None,
    foreground: Annotated[bool, typer.Option(help="supervise in this terminal until Ctrl-C (no daemon)")] = False,
    wait: Annotated[float, typer.Option(help="seconds to wait for the services to come up")] = 120.0,
) -> None:
    """Start the platform's services under a supervisor (restarts crashed ones; logs in PULSE_HOME/logs)."""
    from pulse import db, supervisor
    from pulse.settings import get_settings

    settings = get_settings()
    home = settings.home.resolve()
    names = supervisor.select(only)
    pid = supervisor.running_supervisor(home)
    if pid is not None:
        console.print(f"Pulse is already up (supervisor pid {pid}); `pulse status` shows the services")
        return
    if left := supervisor.leftover_children(home):
        raise UserError(f"services of an earlier supervisor still run ({', '.join(s['name'] for s in left)}): "
                        f"run `pulse down` first")
    with err_console.status("database: connecting and applying migrations"):
        url = db.database_url()
        db.migrate(url)
    plan = supervisor.plan(settings, url, names)
    for note in plan.notes:
        err_console.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)
    if not plan.specs:
        raise UserError("none of the selected services can run here (see the notes above)")
    supervisor.check_ports(plan.specs, settings.http_host)
    started = [s.name for s in plan.specs]
    if foreground:
        sup = supervisor.Supervisor(plan, stop_timeout_s=settings.stop_timeout_s)
        if not sup.acquire():
            console.print("Pulse is already up; `pulse status` shows the services")
            return
        for spec in plan.specs:
            console.print(f"{spec.name:<18} {spec.url or '':<40} {spec.about}", soft_wrap=True)
        console.print(f"logs in {supervisor.log_dir(home)}; Ctrl-C stops everything")
        raise typer.Exit(sup.run())
    daemon = supervisor.start_daemon(plan, settings.stop_timeout_s)
    with err_console.status(f"starting {', '.join(started)}"):
        supervisor.wait_started(home, daemon, started, wait)
    if daemon.poll() == supervisor.EXIT_ALREADY_RUNNING:
        console.print("Pulse is already up; `pulse status` shows the services")
        return
    if daemon.poll() is not None:
        raise UserError(f"the supervisor exited ({daemon.returncode}): "
                        f"{supervisor.log_tail(supervisor.log_dir(home) / 'supervisor.log')}")
    services = (supervisor.services_status(home) or {"services": []})["services"]
    failing = [s for s in services if s["state"] != "running"]
    _print_services(services, f"Pulse is {'up' if not failing else 'up, not all well'} "
                              f"(supervisor pid {daemon.pid}; `pulse down` stops it)")
    for s in plan.specs:
        if s.url:
            console.print(f"{s.name}: {s.url}  ({s.about})", soft_wrap=True)
    for s in failing:
        if s["state"] == "starting":
            err_console.print(f"[yellow]{s['name']} is still starting[/yellow] (`pulse status` shows when it "
                              f"runs; its log: {s['log']})", highlight=False, soft_wrap=True)
            continue
        err_console.print(f"[red]{s['name']} is not running[/red] ({s['state']}, last exit {s['last_exit']}); "
                          f"the supervisor retries it with backoff. The end of {s['log']}:\n"
                          f"{supervisor.log_tail(Path(s['log']), 8)}", highlight=False, soft_wrap=True)
    if failing:
        raise typer.Exit(1)


@app.command("down")
def down_cmd() -> None:
    """Stop the supervised services (SIGTERM, then SIGKILL after PULSE_STOP_TIMEOUT_S) and wait until gone."""
    from pulse import supervisor
    from pulse.settings import get_settings

    settings = get_settings()
    home = settings.home.resolve()
    with err_console.status("stopping the services"):
        pid, stopped = supervisor.stop(home, settings.stop_timeout_s)
    if pid is None and not stopped:
        console.print("Pulse is not running (nothing to stop)")
    elif pid is None:
        console.print(f"stopped {stopped} service(s) left behind by a supervisor that died")
    else:
        console.print(f"Pulse is down: supervisor {pid} and {stopped} service(s) stopped; "
                      f"logs in {supervisor.log_dir(home)}", soft_wrap=True)


@app.command("status")
def status_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The supervised services (when `pulse up` runs) and a summary of the fleet and the data."""
    from pulse import status, supervisor
    from pulse.settings import get_settings

    home = get_settings().home.resolve()
    services = supervisor.services_status(home)
    if as_json:
        with _connect() as conn:
            _print_json({**status.summary(conn), "supervisor": services})
        return
    # services first: they are worth seeing even when the database is what is down
    left = [] if services is not None else supervisor.leftover_children(home)
    if left:
        err_console.print(f"[yellow]services: the supervisor is gone but {', '.join(s['name'] for s in left)} "
                          f"still run: `pulse down` stops them[/yellow]", highlight=False, soft_wrap=True)
    elif services is None:
        console.print("services: not running (`pulse up` starts them)")
    else:
        _print_services(services["services"], f"supervisor pid {services['pid']}, up "
                                              f"{supervisor.uptime(services['uptime_s'])}")
    with _connect() as conn:
        summary = status.summary(conn)
    for key, value in summary.items():
        console.print(f"{key}: {value}")


# ------------------------------------------------------------------ benchmarks


@bench_app.command("ingest")
def bench_ingest(
    messages: Annotated[int, typer.Option(help="MQTT messages per run")] = 100_000,
    workers: Annotated[int, typer.Option(help="ingest processes for the scale-out run")] = 2,
    http_envelopes: Annotated[int, typer.Option(help="envelopes for the HTTP run")] = 100_000,
    soak: Annotated[float, typer.Option(help="seconds of the memory soak run (0 skips)")] = 300.0,
    soak_rate: Annotated[float, typer.Option(help="MQTT envelopes/s during the soak")] = 2000.0,
    only_http_soak: Annotated[bool, typer.Option(help="skip the MQTT throughput runs")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = True,
) -> None:
    """Ingest throughput vs a bare paho receive loop, scale-out, HTTP and memory (JSON)."""
    from ingest.bench import run_all

    _print_json(run_all(messages=messages, workers=workers, http_envelopes=http_envelopes, soak_s=soak,
                        soak_rate=soak_rate, skip=("mqtt",) if only_http_soak else ()))


@bench_app.command("analytics")
def bench_analytics(
    rows: Annotated[int, typer.Option(help="raw rows in the generated lake")] = 10_000_000,
    devices: Annotated[int, typer.Option()] = 10_000,
    scaling_base_rows: Annotated[Optional[int], typer.Option(help="base size of the 1x/4x/16x scaling table")] = None,
    compare: Annotated[bool, typer.Option(help="also time Polars vs DuckDB per grain")] = False,
    batch_hours: Annotated[int, typer.Option(help="hourly partitions per Dagster run")] = 8,
    cache_dir: Annotated[Optional[Path], typer.Option(help="keep generated lakes here and reuse them")] = None,
    sla: Annotated[bool, typer.Option(help="also time the monthly SLA report (needs PostgreSQL)")] = True,
    sla_devices: Annotated[int, typer.Option(help="devices of the SLA report's tenant")] = 10_000,
    sla_database_url: Annotated[Optional[str], typer.Option(
        help="server for the SLA scratch database (default PULSE_DATABASE_URL)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = True,
) -> None:
    """Rollup throughput, Dagster overhead, scaling and the monthly SLA report over generated data (JSON)."""
    from assets.bench import run_analytics_bench

    _print_json(run_analytics_bench(rows, devices=devices, scaling_base_rows=scaling_base_rows, compare=compare,
                                    batch_hours=batch_hours, cache_dir=cache_dir, sla=sla, sla_devices=sla_devices,
                                    sla_database_url=sla_database_url))


@bench_app.command("alerts")
def bench_alerts(
    breaches: Annotated[int, typer.Option(help="breaching readings sent through real ingest")] = 200,
    as_json: Annotated[bool, typer.Option("--json")] = True,
) -> None:
    """Reading → committed alert event + outbox row latency through real ingest, and engine rate (JSON)."""
    from alerting.bench import run_alert_bench
    from pulse import db

    _print_json(run_alert_bench(db.database_url(), breaches=breaches))


@bench_app.command("app")
def bench_app_pages(
    devices: Annotated[int, typer.Option(min=1, help="devices in the generated fleet")] = 10_000,
    days: Annotated[int, typer.Option(min=1, max=366, help="days of 1-minute data the lake rollups cover")] = 30,
    metrics: Annotated[int, typer.Option(min=1, max=5, help="metrics per device")] = 3,
    warm_runs: Annotated[int, typer.Option(min=1, help="warm visits per page (median reported)")] = 5,
    reuse: Annotated[bool, typer.Option("--reuse/--regenerate", help="reuse a generated lake of the same size")] = True,
    as_json: Annotated[bool, typer.Option("--json")] = True,
) -> None:
    """Cold and warm render time of every Streamlit page in headless Chromium at fleet scale (JSON)."""
    from app.bench import run_app_bench

    _print_json(run_app_bench(devices=devices, days=days, metrics=metrics, warm_runs=warm_runs, reuse=reuse))


def main() -> None:
    from pulse.logs import configure_logging

    configure_logging()  # structured logs go to stderr; stdout stays for results (--json)
    _mount_optional()
    try:
        app()
    except UserError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a database that went away mid-command is a clear message too
        import psycopg

        if isinstance(exc, psycopg.OperationalError):
            err_console.print(f"[red]error:[/red] database: {str(exc).strip().splitlines()[0]}", highlight=False)
            sys.exit(2)
        if isinstance(exc, psycopg.errors.UndefinedTable):  # a database that was never migrated
            err_console.print(f"[red]error:[/red] {str(exc).strip().splitlines()[0]}: run `pulse db migrate` first",
                              highlight=False)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
