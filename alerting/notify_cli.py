"""CLI for notification delivery: `pulse notify`, `pulse deliveries ...`, `pulse oncall ...`.

Mounted by pulse/cli.py through ``register(app)``. User mistakes raise
``pulse.errors.UserError`` (one message, exit 2).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer

from pulse.errors import UserError

notify_help = "Run the notification delivery worker."
deliveries_app = typer.Typer(no_args_is_help=True, help="The delivery log: list, inspect, re-drive dead letters.")
oncall_app = typer.Typer(no_args_is_help=True, help="On-call schedules: who is on call, iCal export.")


def _parse_time(text: str, option: str) -> datetime:
    from alerting.cli import _time  # one parser for every alerting command (ISO 8601, now, ±2h)

    return _time(text, option)


def _connect():
    from pulse import db

    return db.connect(autocommit=True)


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# ------------------------------------------------------------------ pulse notify


def notify_command(
    once: Annotated[bool, typer.Option("--once", help="process everything due now, then exit")] = False,
    worker_id: Annotated[Optional[str], typer.Option("--worker-id", help="name in the delivery log")] = None,
    metrics_port: Annotated[Optional[int], typer.Option("--metrics-port", help="serve Prometheus metrics")] = None,
) -> None:
    """Deliver notifications: outbox → routes → escalations → channels (runs until Ctrl-C)."""
    from pydantic import ValidationError

    from alerting import delivery, notify
    from pulse.logs import configure_logging

    configure_logging()
    try:
        settings = delivery.NotifySettings()
    except ValidationError as exc:
        raise UserError(f"invalid PULSE_NOTIFY_* setting: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from None
    if metrics_port is not None:
        settings = settings.model_copy(update={"metrics_port": metrics_port})
    if once:
        stats = notify.run_worker(worker_id=worker_id, once=True, settings=settings)
        typer.echo(json.dumps({k: v for k, v in stats.__dict__.items()}))
        return
    stop = threading.Event()
    # SIGTERM (systemd, containers) stops as cleanly as Ctrl-C: the current cycle finishes.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        notify.run_worker(worker_id=worker_id, settings=settings, stop=stop)
    except KeyboardInterrupt:
        stop.set()


# ------------------------------------------------------------------ pulse deliveries


@deliveries_app.command("list")
def deliveries_list(
    status: Annotated[Optional[str], typer.Option("--status", help="pending | failed | sent | dead")] = None,
    alert: Annotated[Optional[str], typer.Option("--alert", help="only this alert id")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List deliveries, newest first."""
    from alerting import delivery

    if status is not None and status not in delivery.STATUSES:
        raise UserError(f"--status must be one of {', '.join(delivery.STATUSES)}, not {status!r}")
    with _connect() as conn:
        rows = delivery.list_deliveries(conn, status=status, alert_id=alert, limit=limit)
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} deliveries")
    for col in ("id", "alert", "event", "channel", "recipient", "status", "attempts", "next attempt", "last error"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["delivery_id"]), r["alert_id"], r["event"], r["channel_id"], r["recipient"] or "-",
                      r["status"], str(r["attempts"]),
                      r["next_attempt_at"].isoformat(timespec="seconds") if r["status"] in ("pending", "failed") else "-",
                      (r["last_error"] or "")[:60])
    Console().print(table)


@deliveries_app.command("retry")
def deliveries_retry(
    delivery_id: Annotated[Optional[int], typer.Argument(help="delivery id to re-drive")] = None,
    dead: Annotated[bool, typer.Option("--dead", help="re-drive every dead delivery")] = False,
) -> None:
    """Re-drive a dead (or failed) delivery, or all dead ones, with a fresh attempt budget."""
    from alerting import delivery

    if (delivery_id is None) == (not dead):
        raise UserError("give a delivery ID or --dead (not both)")
    with _connect() as conn:
        ids = delivery.redrive(conn, delivery_id=delivery_id, all_dead=dead)
        if delivery_id is not None and not ids:
            row = conn.execute("select status from deliveries where delivery_id = %s", (delivery_id,)).fetchone()
            if row is None:
                raise UserError(f"no delivery with id {delivery_id}")
            raise UserError(f"delivery {delivery_id} is {row[0]}; only dead or failed deliveries can be retried")
    typer.echo(f"re-queued {len(ids)} deliver{'y' if len(ids) == 1 else 'ies'}" + (f": {ids}" if ids else ""))


# ------------------------------------------------------------------ pulse oncall


def _schedule(schedule_id: str, config: Path | None):
    from alerting.oncall import Schedule

    if config is not None:
        from alerting import config as alerting_config

        if not config.exists():
            raise UserError(f"config file {config} does not exist")
        try:
            cfg = alerting_config.load(config)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - a config error is the user's to fix
            raise UserError(f"{config}: {exc}") from None
        found = {s.id: s for s in cfg.schedules}
    else:
        from alerting.config import load_objects

        with _connect() as conn:
            found = {d["id"]: d for d in load_objects(conn, "schedule")}
    if schedule_id not in found:
        known = ", ".join(sorted(found)) or "none"
        raise UserError(f"unknown schedule {schedule_id!r} (known: {known})")
    value = found[schedule_id]
    return value if isinstance(value, Schedule) else Schedule.model_validate(value)


@oncall_app.command("who")
def oncall_who(
    schedule: Annotated[str, typer.Option("--schedule", help="schedule id")],
    at: Annotated[Optional[str], typer.Option("--at", help="ISO 8601 instant (default now)")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="read the schedule from this YAML "
                                                   "instead of the applied config")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Who is on call for a schedule at an instant."""
    from alerting.oncall import who_is_on_call

    sched = _schedule(schedule, config)
    when = _parse_time(at, "--at") if at else datetime.now(timezone.utc)
    result = who_is_on_call(sched, when)
    data = {"schedule": sched.id, "at": when.isoformat(), "user": result.user,
            "start": result.start.isoformat() if result.start else None,
            "end": result.end.isoformat() if result.end else None,
            "layer": getattr(result, "layer", None)}
    if as_json:
        _print_json(data)
    elif result.user is None:
        typer.echo(f"nobody is on call for {sched.id} at {when.isoformat()}")
    else:
        typer.echo(f"{result.user} is on call for {sched.id} at {when.isoformat()}"
                   + (f" (until {data['end']})" if data["end"] else ""))


@oncall_app.command("export")
def oncall_export(
    schedule: Annotated[str, typer.Option("--schedule", help="schedule id")],
    ical: Annotated[bool, typer.Option("--ical", help="iCalendar output (the only format)")] = False,
    start: Annotated[Optional[str], typer.Option("--from", help="ISO 8601 start (default now)")] = None,
    end: Annotated[Optional[str], typer.Option("--to", help="ISO 8601 end (default start + 28 days)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="write to this file instead of stdout")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="read the schedule from this YAML")] = None,
) -> None:
    """Export a schedule's shifts as an iCalendar (.ics) feed."""
    from alerting.oncall import to_ical

    if not ical:
        raise UserError("choose an export format: --ical")
    sched = _schedule(schedule, config)
    t0 = _parse_time(start, "--from") if start else datetime.now(timezone.utc)
    t1 = _parse_time(end, "--to") if end else t0 + timedelta(days=28)
    if t1 <= t0:
        raise UserError("--to must be after --from")
    if t1 - t0 > timedelta(days=366 * 2):
        raise UserError("export at most two years at once")
    text = to_ical(sched, t0, t1)
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}") from None
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("notify", help=notify_help)(notify_command)
    app.add_typer(deliveries_app, name="deliveries")
    app.add_typer(oncall_app, name="oncall")
