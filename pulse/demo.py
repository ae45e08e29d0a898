"""`pulse demo`: the platform end to end on one machine.

Today it runs the foundation: migrate, provision a simulated fleet (2 tenants, 2 sites each),
backfill history, start ingest (HTTP always, MQTT when PULSE_MQTT_URL is set), stream
live telemetry into it, and print a summary. It grows as the alerting, analytics and app
parts land.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

from rich.console import Console
from rich.progress import Progress

from pulse import db, simulate, simulator, status
from pulse.errors import UserError
from pulse.settings import get_settings

DEMO_TENANTS = ("acme", "globex")


@dataclass
class DemoOptions:
    devices: int = 60
    history_days: float = 1.0
    duration_s: float | None = 60.0
    rate: float = 200.0


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def run(options: DemoOptions, console: Console) -> dict:
    from ingest.service import IngestService

    settings = get_settings()
    started = time.perf_counter()
    with console.status("starting the database (embedded when PULSE_DATABASE_URL is unset)"):
        url = db.database_url()
        db.migrate(url)
    fleet = simulator.make_fleet(options.devices, tenants=DEMO_TENANTS, sites_per_tenant=2)
    start, end = simulate.history_window(options.history_days)
    faults = simulator.plan_faults(fleet, start, end, per_device_day=0.2)
    with db.connect(url) as conn:
        tokens = simulate.provision(conn, fleet, issue_tokens=True)
        total = simulate.points(fleet, start, end, 60.0)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"backfilling {options.history_days:g} day(s) of history", total=total)
            backfilled = simulate.backfill(conn, fleet, start, end, faults=faults,
                                           progress=lambda n: progress.advance(task, n))
    console.print(f"backfilled {backfilled.rows:,} rows for {len(fleet)} devices "
                  f"({backfilled.rows_per_s:,.0f} rows/s)")

    port = settings.http_port
    if not _port_free(settings.http_host, port):
        raise UserError(f"port {port} is in use; set PULSE_HTTP_PORT to a free port")
    service = IngestService(settings, url, mqtt_url=settings.mqtt_url, http_port=port, worker_id="demo")
    service.start()
    console.print(f"ingest: http://{settings.http_host}:{port}/v1/telemetry "
                  f"(health /healthz, metrics /metrics); MQTT {'on ' + settings.mqtt_url if settings.mqtt_url else 'off'}")
    stop = threading.Event()
    try:
        duration = options.duration_s if options.duration_s is not None else float("inf")
        label = f"{options.duration_s:g}s" if options.duration_s is not None else "until Ctrl-C"
        console.print(f"streaming live telemetry at {options.rate:g} envelopes/s ({label})")
        if settings.mqtt_url:
            live = simulate.run_mqtt(settings.mqtt_url, fleet, rate=options.rate, duration_s=duration,
                                     faults=faults, stop=stop, client_id="pulse-demo-sim")
        else:
            live = simulate.run_http(f"http://{settings.http_host}:{port}", fleet, tokens, rate=options.rate,
                                     duration_s=duration, faults=faults, stop=stop)
    except KeyboardInterrupt:
        stop.set()
        live = None
    finally:
        service.stop()
    with db.connect(url) as conn:
        summary = status.summary(conn)
    summary.update({
        "rows_backfilled": backfilled.rows,
        "live_envelopes_sent": live.sent if live else None,
        "live_envelopes_acknowledged": live.acked if live else None,
        "rows_ingested_live": service.writer.totals.inserted,
        "duplicates_skipped": service.writer.totals.duplicates,
        "seconds": round(time.perf_counter() - started, 1),
    })
    return summary
