"""`pulse alerts`, `pulse silences`, `pulse rules`: thin typer wrappers over alerting.api,
alerting.silences and alerting.backtest. User mistakes raise UserError (exit 2)."""

from __future__ import annotations

import getpass
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from pulse.errors import UserError

console = Console()

alerts_app = typer.Typer(no_args_is_help=True, help="Alerts: list, show (timeline), ack, resolve, comment.")
silences_app = typer.Typer(no_args_is_help=True, help="Silences and maintenance windows.")
rules_app = typer.Typer(no_args_is_help=True, help="Alert rules: validate, backtest on stored history.")

UserOpt = Annotated[Optional[str], typer.Option("--user", help="acting user (default PULSE_USER or login name)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(silences_app, name="silences")
    app.add_typer(rules_app, name="rules")


def _user(user: str | None) -> str:
    if user:
        return user
    env = os.environ.get("PULSE_USER")
    if env:
        return env
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        raise UserError("cannot tell who you are: pass --user or set PULSE_USER") from None


def _connect():
    from pulse import db

    conn = db.connect()
    if conn.execute("select to_regclass('public.alerts')").fetchone()[0] is None:
        conn.close()
        raise UserError("the database has no alerting tables yet: run `pulse db migrate`")
    conn.rollback()
    return conn


def _json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _time(text: str, what: str) -> datetime:
    """ISO 8601, or relative to now: 'now', '+2h', '-30m' (units s/m/h/d/w)."""
    from alerting.rules import parse_duration

    t = text.strip()
    now = datetime.now(UTC)
    if t == "now":
        return now
    if t[:1] in ("+", "-"):
        try:
            delta = parse_duration(t[1:])
        except Exception:  # pydantic's error for a bad duration
            raise UserError(f"{what}: {text!r} is not a time (ISO 8601, 'now', '+2h', '-30m')") from None
        return now + timedelta(seconds=delta if t[0] == "+" else -delta)
    try:
        value = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{what}: {text!r} is not a time (ISO 8601 like 2026-11-28T14:00:00Z, 'now', '+2h')") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _fmt(dt: datetime | None) -> str:
    return "" if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


# ------------------------------------------------------------------ alerts


@alerts_app.command("list")
def alerts_list(
    tenant: Annotated[Optional[str], typer.Option()] = None,
    state: Annotated[str, typer.Option(help="open | all | pending | firing | acknowledged | flapping | resolved")] = "open",
    rule: Annotated[Optional[str], typer.Option()] = None,
    device: Annotated[Optional[str], typer.Option()] = None,
    shadow: Annotated[bool, typer.Option("--shadow/--no-shadow", help="include shadow-rule alerts")] = True,
    limit: int = 100,
    as_json: JsonOpt = False,
) -> None:
    """Alerts, newest first (default: open ones)."""
    from alerting import api

    with _connect() as conn:
        items = api.list_alerts(conn, tenant=tenant, state=state, rule=rule, device=device, include_shadow=shadow,
                                limit=limit)
    if as_json:
        _json(items)
        return
    table = Table()
    for col in ("alert id", "state", "severity", "rule", "subject", "value", "count", "started", "ack/resolve"):
        table.add_column(col, overflow="fold")
    for a in items:
        who = a["resolved_by"] or a["acknowledged_by"] or ""
        table.add_row(a["alert_id"], a["state"] + (" (shadow)" if a["shadow"] else ""), a["severity"], a["rule_id"],
                      a["subject"], "" if a["value"] is None else f"{a['value']:g}", str(a["count"]),
                      _fmt(a["started_at"]), who + (f" {a['resolution']}" if a["resolution"] else ""))
    console.print(table)


@alerts_app.command("show")
def alerts_show(alert: Annotated[str, typer.Argument(help="alert id, unique prefix, or tenant/rule/subject")],
                as_json: JsonOpt = False) -> None:
    """One alert with its event timeline."""
    from alerting import api

    with _connect() as conn:
        a = api.show_alert(conn, alert)
    if as_json:
        _json(a)
        return
    console.print(f"[bold]{a['alert_id']}[/bold]  {a['state']}{' (shadow)' if a['shadow'] else ''}  "
                  f"severity={a['severity']}  count={a['count']}")
    console.print(f"rule {a['rule_id']} on {a['subject']}: {a['summary'] or ''}")
    if a["resolution"]:
        console.print(f"resolution: {a['resolution']} by {a['resolved_by']}")
    table = Table(title="timeline")
    for col in ("at", "action", "from → to", "actor", "reason", "notified"):
        table.add_column(col, overflow="fold")
    for e in a["events"]:
        notified = "silenced" if e["silenced"] else ("yes" if e["outbox_rows"] else "no")
        move = f"{e['from_state'] or ''} → {e['to_state']}" if e["to_state"] else ""
        table.add_row(_fmt(e["at"]), e["action"], move, e["actor"] or "", e["reason"] or "", notified)
    console.print(table)


@alerts_app.command("ack")
def alerts_ack(alert: str, user: UserOpt = None,
               comment: Annotated[Optional[str], typer.Option(help="note stored with the ack")] = None,
               as_json: JsonOpt = False) -> None:
    """Acknowledge a firing alert (stops escalation; reaches the live engine)."""
    from alerting import api

    with _connect() as conn:
        ev = api.acknowledge(conn, alert, user=_user(user), comment=comment)
    _json(ev) if as_json else console.print(f"acknowledged {ev['alert_id']} as {ev['actor']}")


@alerts_app.command("resolve")
def alerts_resolve(
    alert: str,
    reason: Annotated[str, typer.Option(help="real_fault | false_alarm | maintenance | other")],
    user: UserOpt = None,
    comment: Annotated[Optional[str], typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Resolve by hand; the reason is kept as a label for detector feedback."""
    from alerting import api

    with _connect() as conn:
        ev = api.resolve(conn, alert, user=_user(user), reason=reason, comment=comment)
    _json(ev) if as_json else console.print(f"resolved {ev['alert_id']} as {ev['actor']} ({reason})")


@alerts_app.command("comment")
def alerts_comment(alert: str, text: str, user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """Add a comment to an alert's timeline."""
    from alerting import api

    with _connect() as conn:
        ev = api.comment(conn, alert, user=_user(user), text=text)
    _json(ev) if as_json else console.print(f"comment added to {ev['alert_id']}")


# ------------------------------------------------------------------ silences


def _kv(items: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"{what} {item!r} must be key=value")
        k, v = item.split("=", 1)
        out[k] = v.split("|") if "|" in v else v
    return out


@silences_app.command("add")
def silences_add(
    tenant: Annotated[Optional[str], typer.Option()] = None,
    site: Annotated[Optional[str], typer.Option()] = None,
    device: Annotated[Optional[str], typer.Option()] = None,
    rule: Annotated[Optional[str], typer.Option()] = None,
    severity: Annotated[Optional[str], typer.Option()] = None,
    tag: Annotated[list[str], typer.Option(help="key=value (repeatable)")] = [],
    match: Annotated[list[str], typer.Option(help="label=value, label=a|b, label=~regex (repeatable)")] = [],
    start: Annotated[str, typer.Option("--from", help="ISO time, 'now' or '+1d'")] = "now",
    end: Annotated[Optional[str], typer.Option("--until", help="ISO time or '+2h' (default: start + --for)")] = None,
    for_: Annotated[Optional[str], typer.Option("--for", help="length of a one-off silence, e.g. 2h")] = None,
    cron: Annotated[Optional[str], typer.Option(help="recurring: cron, e.g. '0 2 * * 6'")] = None,
    rrule: Annotated[Optional[str], typer.Option(help="recurring: RRULE, e.g. 'FREQ=WEEKLY;BYDAY=SA;BYHOUR=2'")] = None,
    duration: Annotated[Optional[str], typer.Option(help="length of each occurrence (recurring), e.g. 2h")] = None,
    time_zone: Annotated[Optional[str], typer.Option("--tz", help="zone of cron/RRULE times (default UTC)")] = None,
    comment: Annotated[Optional[str], typer.Option()] = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Silence matching alerts: recorded, not notified. One-off or recurring, may start later."""
    from alerting import silences
    from alerting.rules import parse_duration

    def dur(text: str | None, what: str) -> float | None:
        if text is None:
            return None
        try:
            return parse_duration(text)
        except Exception:
            raise UserError(f"{what}: {text!r} is not a duration (e.g. 30m, 2h)") from None

    if cron and rrule:
        raise UserError("give --cron or --rrule, not both")
    matchers = silences.matcher_from_options(tenant=tenant, site=site, device=device, rule=rule, severity=severity,
                                             tags=_kv(tag, "--tag"), labels=_kv(match, "--match"))
    starts = _time(start, "--from")
    if end is not None:
        ends = _time(end, "--until")
    elif for_ is not None:
        ends = starts + timedelta(seconds=dur(for_, "--for") or 0)
    elif cron or rrule:
        ends = starts + timedelta(days=3650)  # recurring without an end: ten years
    else:
        raise UserError("give --until or --for (how long the silence lasts)")
    with _connect() as conn:
        s = silences.add_silence(conn, matchers=matchers, starts_at=starts, ends_at=ends, created_by=_user(user),
                                 comment=comment, recurrence=cron or rrule, duration_s=dur(duration, "--duration"),
                                 time_zone=time_zone)
    _json(s.to_dict()) if as_json else console.print(f"silence {s.silence_id} added ({_fmt(starts)} → {_fmt(ends)})")


@silences_app.command("list")
def silences_list(tenant: Annotated[Optional[str], typer.Option()] = None,
                  expired: Annotated[bool, typer.Option("--all", help="include expired/ended")] = False,
                  as_json: JsonOpt = False) -> None:
    """Silences, with whether each is active right now."""
    from alerting import silences

    with _connect() as conn:
        items = silences.list_silences(conn, tenant_id=tenant, include_expired=expired)
    if as_json:
        _json(items)
        return
    table = Table()
    for col in ("id", "matchers", "from", "until", "recurrence", "active now", "by", "comment"):
        table.add_column(col, overflow="fold")
    for s in items:
        rec = f"{s['recurrence']} for {s['duration_s']:g}s" if s["recurrence"] else ""
        table.add_row(str(s["silence_id"]), json.dumps(s["matchers"]), _fmt(s["starts_at"]), _fmt(s["ends_at"]), rec,
                      "yes" if s["active_now"] else "no", s["created_by"] or "", s["comment"] or "")
    console.print(table)


@silences_app.command("expire")
def silences_expire(silence_id: int, user: UserOpt = None) -> None:
    """End a silence now."""
    from alerting import silences

    with _connect() as conn:
        silences.expire_silence(conn, silence_id, by=_user(user))
    console.print(f"silence {silence_id} expired")


# ------------------------------------------------------------------ rules


def _read_rules(path: Path) -> list[Any]:
    """A rule file (`rules:` list) or a full platform config; errors name the YAML path."""
    import yaml
    from pydantic import ValidationError

    from pulse.config import format_validation_error

    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    if isinstance(data, dict) and set(data) - {"rules"}:
        from alerting import config

        return list(config.loads(text, source=str(path)).rules)
    from alerting.rules import RuleSet

    if data is None:
        data = {"rules": []}
    if isinstance(data, list):
        data = {"rules": data}
    try:
        return list(RuleSet.model_validate(data).rules)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, str(path), root)) from None


@rules_app.command("validate")
def rules_validate(file: Path) -> None:
    """Validate a rule file (or a whole config file) without storing anything."""
    rules = _read_rules(file)
    console.print(f"{file} is valid: {len(rules)} rule(s)")


@rules_app.command("backtest")
def rules_backtest(
    rule: Annotated[Path, typer.Option("--rule", help="rule file (YAML)")],
    start: Annotated[str, typer.Option("--from", help="ISO time or '-7d'")],
    end: Annotated[str, typer.Option("--to", help="ISO time or 'now'")] = "now",
    tenant: Annotated[Optional[str], typer.Option(help="only this tenant")] = None,
    step: Annotated[Optional[str], typer.Option(help="also advance the clock every STEP (e.g. 1m)")] = None,
    transitions: Annotated[bool, typer.Option("--transitions", help="include every transition in the JSON")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Replay stored telemetry through the live engine's code: alerts fired, flaps, time in
    alert, pages per day — per rule."""
    from alerting.history import run_backtest
    from alerting.rules import parse_duration

    rules = _read_rules(rule)
    t1, t2 = _time(start, "--from"), _time(end, "--to")
    if t2 <= t1:
        raise UserError("--to must be after --from")
    step_td = None
    if step is not None:
        try:
            step_td = timedelta(seconds=parse_duration(step))
        except Exception:
            raise UserError(f"--step: {step!r} is not a duration") from None
        if step_td <= timedelta(0):
            raise UserError("--step must be positive")
    with _connect() as conn:
        report = run_backtest(conn, rules, t1, t2, tenant=tenant, step=step_td)
    if as_json:
        if not transitions:
            report.pop("transitions")
        _json(report)
        return
    console.print(f"{report['readings']} reading(s) of {len(report['tenants'])} tenant(s), "
                  f"{_fmt(t1)} → {_fmt(t2)}")
    table = Table()
    for col in ("rule", "shadow", "alerts fired", "flaps", "pages", "pages/day", "time in alert"):
        table.add_column(col)
    for r in report["per_rule"]:
        table.add_row(r["rule_id"], "yes" if r["shadow"] else "", str(r["alerts_fired"]), str(r["flaps"]),
                      str(r["pages"]), f"{r['pages_per_day']:.2f}", str(timedelta(seconds=round(r["time_in_alert_s"]))))
    console.print(table)
    console.print(f"total: {report['alerts_fired']} alert(s) fired, {report['flaps']} flap(s), "
                  f"{report['pages']} page(s), {report['pages_per_day']:.2f} pages/day")
