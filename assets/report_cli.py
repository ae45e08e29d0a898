"""CLI for reports: `pulse report sla`, `pulse report runs`, `pulse report settings`.

Mounted by pulse/cli.py through ``register(app)`` (group name ``report``). User mistakes
raise ``pulse.errors.UserError`` (one message, exit 2 via pulse.cli.main).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from pulse.errors import UserError

report_app = typer.Typer(no_args_is_help=True, help="Reports: SLA (availability, incidents, MTTA/MTTR).")


def _connect():
    from pulse import db

    return db.connect()


def _formats(values: list[str]) -> list[str] | None:
    out = [f.strip().lower() for v in values for f in v.split(",") if f.strip()]
    bad = [f for f in out if f not in ("csv", "json", "html")]
    if bad:
        raise UserError(f"--format {', '.join(bad)}: expected csv, json or html")
    return out or None


@report_app.command("sla")
def sla_command(
    tenant: Annotated[str, typer.Option(help="tenant id")],
    period: Annotated[str, typer.Option(help="YYYY-MM (monthly) or YYYY-MM-DD (daily), in the tenant's time zone")],
    fmt: Annotated[list[str], typer.Option("--format", help="csv, json, html (repeat or comma-separate; "
                                                             "default: the tenant's settings)")] = [],
    out: Annotated[Optional[Path], typer.Option(help="output directory (files go to OUT/<tenant>/)")] = None,
    deliver: Annotated[bool, typer.Option("--deliver/--no-deliver", help="send to the tenant's subscribers")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the run as JSON")] = False,
) -> None:
    """Build an SLA report for one tenant and period; record it in report_runs."""
    from assets.sla_delivery import run_sla_report
    from pulse.settings import get_settings

    formats = _formats(fmt)
    lake = get_settings().lake_path
    with _connect() as conn:
        outcome = run_sla_report(conn, tenant, period, formats=formats, out_dir=out,
                                 lake_dir=lake if lake.exists() else None, deliver=deliver, triggered_by="cli")
    result = {"run_id": outcome.run_id, "status": outcome.status, "path": str(outcome.path),
              "files": [str(f) for f in outcome.files], "delivered_to": outcome.delivered_to,
              "summary": outcome.summary}
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    else:
        s = outcome.summary or {}
        typer.echo(f"report run {outcome.run_id}: {outcome.status}; availability {s.get('availability_pct')}% "
                   f"(target {s.get('target_pct')}%), {s.get('incidents')} incident(s)")
        for f in outcome.files:
            typer.echo(f"  {f}")
        for d in outcome.delivered_to:
            typer.echo(f"  {d['kind']} {d['target']}: {'ok' if d['ok'] else 'FAILED ' + str(d['error'])}")
    if outcome.status != "succeeded":
        raise typer.Exit(1)


@report_app.command("runs")
def runs_command(tenant: Annotated[Optional[str], typer.Option()] = None,
                 limit: Annotated[int, typer.Option(min=1, max=1000)] = 20) -> None:
    """Recent report runs (JSON)."""
    from assets.sla_delivery import report_runs

    with _connect() as conn:
        rows = report_runs(conn, tenant, limit)
    sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")


@report_app.command("settings")
def settings_command(tenant: Annotated[str, typer.Option()],
                     file: Annotated[Optional[Path], typer.Option(help="JSON file with the new settings")] = None) -> None:
    """Show a tenant's report settings, or replace them from a JSON file."""
    from pydantic import ValidationError

    from assets.sla import ReportSettings, load_report_settings, save_report_settings

    with _connect() as conn:
        if file is not None:
            try:
                data = json.loads(file.read_text())
                model = ReportSettings.model_validate(data)
            except OSError as exc:
                raise UserError(f"cannot read {file}: {exc.strerror}") from None
            except (ValueError, ValidationError) as exc:
                raise UserError(f"invalid report settings in {file}: {exc}") from None
            save_report_settings(conn, tenant, model)
        current = load_report_settings(conn, tenant)
    sys.stdout.write(current.model_dump_json(indent=2, exclude_none=True) + "\n")


def register(app: typer.Typer) -> None:
    app.add_typer(report_app, name="report")
