"""Running an SLA report end to end: record the run, build, write to folder(s), deliver to the
tenant's subscribers, record the outcome (table ``report_runs``).

Delivery uses the applied channel definitions (``alerting.config.load_objects(conn, "channel")``):
- email: the alert email channel (``alerting.channels.smtp``) only builds alert messages
  (text + HTML, no attachments), so the report message is built here — summary text plus the
  HTML report as an attachment — and sent through that channel's SMTP session code and
  settings (host, port, TLS mode, credentials by SecretRef).
- webhook: a JSON summary with the file paths (or links under ``link_base``), signed exactly
  like alert webhooks (``X-Pulse-Timestamp`` / ``X-Pulse-Signature`` HMAC-SHA256), so a
  receiver verifies it with ``alerting.channels.webhook.verify_signature``; event ``report``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from psycopg.types.json import Jsonb

from assets.sla import (
    ReportSettings,
    SlaReport,
    build_sla_report,
    load_report_settings,
    parse_period,
    report_basename,
    tenant_zone,
    write_report,
)
from pulse.errors import UserError


@dataclass
class RunOutcome:
    run_id: int
    status: str
    path: Path
    files: list[Path]
    delivered_to: list[dict] = field(default_factory=list)
    summary: dict | None = None
    report: SlaReport | None = None


def default_report_dir() -> Path:
    from pulse.settings import get_settings

    return get_settings().home / "reports"


def run_sla_report(conn, tenant: str, period_label: str, *, formats: list[str] | None = None,
                   out_dir: Path | None = None, lake_dir: Path | None = None, deliver: bool = True,
                   settings: ReportSettings | None = None, triggered_by: str = "cli",
                   now: datetime | None = None, **health_options) -> RunOutcome:
    """Build one tenant's SLA report for a period and record the run.

    Files go to ``out_dir`` if given, else the tenant's configured folder, else
    ``PULSE_HOME/reports``, always under ``<dir>/<tenant>/``; when ``out_dir`` is given and a
    folder is configured, both get the files. User mistakes (unknown tenant/period/format)
    raise ``UserError`` before a run is recorded; failures after that are recorded as
    ``failed`` and re-raised; a failed delivery makes the run ``delivery_failed``."""
    period = parse_period(period_label, tenant_zone(conn, tenant))
    settings = settings or load_report_settings(conn, tenant)
    formats = list(formats or settings.formats)
    bad = [f for f in formats if f not in ("csv", "json", "html")]
    if bad:
        raise UserError(f"unknown format(s) {', '.join(bad)}; expected csv, json, html")
    targets = [p for p in (Path(out_dir) if out_dir else None, settings.folder_path()) if p is not None]
    targets = [t / tenant for t in (targets or [default_report_dir()])]
    run_id = conn.execute(
        """insert into report_runs (report, tenant_id, period, period_start, period_end, formats, path, triggered_by)
           values ('sla', %s, %s, %s, %s, %s, %s, %s) returning run_id""",
        (tenant, period.label, period.start, period.end, formats, str(targets[0]), triggered_by)).fetchone()[0]
    conn.commit()
    try:
        report = build_sla_report(conn, tenant, period.label, lake_dir=lake_dir, settings=settings, now=now,
                                  **health_options)
        files: list[Path] = []
        for i, target in enumerate(targets):
            written = write_report(report, target, formats)
            if i == 0:
                files = written
        delivered = deliver_report(conn, report, files, settings, run_id=run_id) if deliver else []
    except BaseException as exc:
        conn.rollback()
        conn.execute("update report_runs set status = 'failed', finished_at = now(), error = %s where run_id = %s",
                     (f"{type(exc).__name__}: {exc}"[:2000], run_id))
        conn.commit()
        raise
    status = "succeeded" if all(d["ok"] for d in delivered) else "delivery_failed"
    errors = "; ".join(f"{d['kind']} {d['target']}: {d['error']}" for d in delivered if not d["ok"]) or None
    summary = report.summary()
    conn.execute(
        """update report_runs set status = %s, finished_at = now(), files = %s, delivered_to = %s, summary = %s,
                  error = %s where run_id = %s""",
        (status, Jsonb([str(f) for f in files]), Jsonb(delivered), Jsonb(summary), errors, run_id))
    conn.commit()
    return RunOutcome(run_id, status, targets[0], files, delivered, summary, report)


def report_runs(conn, tenant: str | None = None, limit: int = 50) -> list[dict]:
    cur = conn.execute(
        """select run_id, report, tenant_id, period, formats, path, started_at, finished_at, status, delivered_to, error
           from report_runs where %s::text is null or tenant_id = %s order by run_id desc limit %s""",
        (tenant, tenant, limit))
    cols = [d.name for d in cur.description]
    rows = [dict(zip(cols, r)) for r in cur.fetchall()]
    conn.commit()
    return rows


# ------------------------------------------------------------------ delivery


def _channel_config(conn, channel_id: str, expected_type: str):
    from alerting.channels.registry import parse_channel_config
    from alerting.config import load_objects

    for definition in load_objects(conn, "channel"):
        if definition.get("id") == channel_id:
            conn.commit()
            data = {k: v for k, v in definition.items() if k not in ("id", "description")}
            if data.get("type") != expected_type:
                raise UserError(f"channel {channel_id!r} is {data.get('type')!r}, expected {expected_type!r}")
            return parse_channel_config(data)
    conn.commit()
    raise UserError(f"unknown channel {channel_id!r} (apply it with `pulse config apply`)")


def deliver_report(conn, report: SlaReport, files: list[Path], settings: ReportSettings, *, run_id: int) -> list[dict]:
    """Send to every configured subscriber; one outcome per destination, never raising for
    a delivery failure (the run records it)."""
    out: list[dict] = []
    if settings.email:
        sub = settings.email
        try:
            cfg = _channel_config(conn, sub.channel, "email")
            recipients = sub.recipients or list(cfg.to)
            ok, error = send_report_email(cfg, report, recipients)
        except Exception as exc:  # noqa: BLE001 - recorded in report_runs
            recipients, ok, error = sub.recipients, False, f"{type(exc).__name__}: {exc}"
        out.append({"kind": "email", "target": sub.channel, "recipients": recipients, "ok": ok, "error": error})
    if settings.webhook:
        sub = settings.webhook
        try:
            cfg = _channel_config(conn, sub.channel, "webhook")
            ok, error, status = send_report_webhook(cfg, report, files, run_id=run_id, link_base=sub.link_base)
        except Exception as exc:  # noqa: BLE001
            ok, error, status = False, f"{type(exc).__name__}: {exc}", None
        out.append({"kind": "webhook", "target": sub.channel, "status": status, "ok": ok, "error": error})
    return out


def subject_line(report: SlaReport) -> str:
    s = report.summary()
    pct = "n/a" if s["availability_pct"] is None else f"{s['availability_pct']:.3f}%"
    verdict = "met" if s["meets_target"] else "MISSED"
    return f"SLA report {report.tenant_id} {report.period.label}: {pct} (target {s['target_pct']:g}% {verdict})"


def build_report_email(report: SlaReport, from_addr: str, recipients: list[str], prefix: str = "[Pulse]") -> EmailMessage:
    from assets.report_html import duration, render_sla_html

    s = report.summary()
    msg = EmailMessage()
    msg["Subject"] = f"{prefix} {subject_line(report)}".strip()
    msg["From"] = from_addr
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="pulse.reports")
    msg["X-Pulse-Report"] = f"sla {report.tenant_id} {report.period.label}"
    text = "\n".join([
        subject_line(report), "",
        f"Period:        {report.period.label} ({report.period.time_zone})",
        f"Availability:  {s['availability_pct']}%  (target {s['target_pct']:g}%)",
        f"Downtime:      {duration(s['downtime_s'])} in {s['incidents']} incident(s)",
        f"Below target:  {s['devices_below_target']} of {s['devices']} device(s)",
        f"Completeness:  {s['completeness_pct']}%",
        f"Alerts:        {s['alerts']}  MTTA {duration(s['mtta_s'])}  MTTR {duration(s['mttr_s'])}",
        "", "The full report (charts and tables) is attached as HTML.",
    ]) + "\n"
    msg.set_content(text)
    msg.add_attachment(render_sla_html(report).encode("utf-8"), maintype="text", subtype="html",
                       filename=f"{report_basename(report)}.html")
    return msg


def send_report_email(cfg, report: SlaReport, recipients: list[str]) -> tuple[bool, str | None]:
    # Reuses the email channel's SMTP session (TLS modes, auth, refusals) so both paths behave alike.
    import smtplib

    from alerting.channels.smtp import _send_blocking

    if not recipients:
        return False, "no recipients"
    creds = (cfg.username.resolve(), cfg.password.resolve()) if cfg.username and cfg.password else None
    msg = build_report_email(report, cfg.from_addr, recipients, cfg.subject_prefix)
    try:
        failures = _send_blocking(cfg, [(recipients, msg)], creds)
    except (OSError, smtplib.SMTPException) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if failures:
        return False, "; ".join(f"{r}: {c} {t}" for r, c, t in failures)
    return True, None


def webhook_body(report: SlaReport, files: list[Path], *, run_id: int, link_base: str | None) -> dict:
    links = [f"{link_base.rstrip('/')}/{f.name}" if link_base else str(f) for f in files]
    html = [link for link, f in zip(links, files) if f.suffix == ".html"]
    return {"version": 1, "event": "report", "report": "sla", "run_id": run_id, "summary": report.summary(),
            "files": links, "link": html[0] if html else (links[0] if links else None)}


def send_report_webhook(cfg, report: SlaReport, files: list[Path], *, run_id: int,
                        link_base: str | None = None) -> tuple[bool, str | None, int | None]:
    from alerting.channels._http import post_json
    from alerting.channels.base import SecretRef
    from alerting.channels.webhook import (HEADER_EVENT, HEADER_IDEMPOTENCY, HEADER_SIGNATURE, HEADER_TIMESTAMP,
                                           sign)

    url = cfg.url.resolve() if isinstance(cfg.url, SecretRef) else cfg.url
    body = json.dumps(webhook_body(report, files, run_id=run_id, link_base=link_base), separators=(",", ":"),
                      sort_keys=True, default=str).encode("utf-8")
    ts = int(time.time())
    headers = {k: (v.resolve() if isinstance(v, SecretRef) else v) for k, v in cfg.headers.items()}
    headers.update({HEADER_TIMESTAMP: str(ts), HEADER_SIGNATURE: sign(body, ts, [k.resolve() for k in cfg.signing_keys]),
                    HEADER_IDEMPOTENCY: f"report:{run_id}", HEADER_EVENT: "report"})
    result = asyncio.run(post_json(url, None, content=body, headers=headers, timeout_s=cfg.timeout_s))
    return result.ok, result.error, result.status_code


__all__ = ["RunOutcome", "run_sla_report", "report_runs", "deliver_report", "build_report_email",
           "send_report_email", "send_report_webhook", "webhook_body", "subject_line", "default_report_dir"]
