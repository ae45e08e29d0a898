"""Email over SMTP: multipart/alternative (text + HTML), STARTTLS / implicit TLS / plain.

Why smtplib in a thread and not aiosmtplib: smtplib is stdlib and battle-tested, the
project does not depend on aiosmtplib, and an alert email is one short SMTP session —
running it via ``asyncio.to_thread`` keeps the event loop free at the cost of one worker
thread per in-flight email, which is negligible at alerting volumes.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from alerting.channels.base import (
    Channel,
    ChannelConfigBase,
    ChannelError,
    DeliveryResult,
    Notification,
    SecretRef,
    SendContext,
    event_title,
    format_value,
)


class EmailConfig(ChannelConfigBase):
    type: Literal["email"] = "email"
    host: str
    port: int | None = Field(default=None, ge=1, le=65535, description="default 587 starttls, 465 ssl, 25 none")
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: SecretRef | None = None
    password: SecretRef | None = None
    from_addr: str
    to: list[str] = Field(min_length=1)
    # per_recipient: one message per address (nobody sees the list, one bounce hurts one);
    # single: one message with every address in To.
    mode: Literal["per_recipient", "single"] = "per_recipient"
    subject_prefix: str = "[Pulse]"
    ca_file: str | None = None  # private CA for the SMTP server's certificate
    tls_verify: bool = True

    @field_validator("to")
    @classmethod
    def _check_to(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if "@" not in a or any(c in a for c in "\r\n,;")]
        if bad:
            raise ValueError(f"not an email address: {', '.join(bad)}")
        return v

    @model_validator(mode="after")
    def _auth_pair(self) -> "EmailConfig":
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password must be given together")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or {"starttls": 587, "ssl": 465, "none": 25}[self.security]


def _subject(n: Notification, prefix: str) -> str:
    return f"{prefix} {event_title(n)}".strip()


def render_text(n: Notification) -> str:
    lines = [
        event_title(n),
        "",
        n.summary,
        "",
        f"Severity: {n.severity}",
        f"Device:   {n.target_label}",
        f"Rule:     {n.rule_name} ({n.rule_id})",
        f"Value:    {format_value(n.value)}",
        f"Tenant:   {n.tenant_id}",
    ]
    if n.site_id:
        lines.append(f"Site:     {n.site_id}")
    lines += [f"Since:    {n.started_at.isoformat()}", f"Event:    {n.event} at {n.at.isoformat()}"]
    if n.labels:
        lines.append("Labels:   " + ", ".join(f"{k}={v}" for k, v in sorted(n.labels.items())))
    if n.url:
        lines += ["", f"Open: {n.url}"]
    lines += ["", f"Alert {n.alert_id}"]
    return "\n".join(lines) + "\n"


def render_html(n: Notification) -> str:
    e = html.escape
    color = {"critical": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}[n.severity]
    if n.event == "resolved":
        color = "#2e7d32"
    rows = [
        ("Severity", n.severity),
        ("Device", n.target_label),
        ("Rule", f"{n.rule_name} ({n.rule_id})"),
        ("Value", format_value(n.value)),
        ("Tenant", n.tenant_id),
    ]
    if n.site_id:
        rows.append(("Site", n.site_id))
    rows += [("Since", n.started_at.isoformat()), ("Event", f"{n.event} at {n.at.isoformat()}")]
    if n.labels:
        rows.append(("Labels", ", ".join(f"{k}={v}" for k, v in sorted(n.labels.items()))))
    table = "".join(
        f'<tr><th align="left" style="padding:2px 12px 2px 0">{e(k)}</th><td>{e(v)}</td></tr>' for k, v in rows
    )
    link = f'<p><a href="{e(n.url, quote=True)}">Open alert</a></p>' if n.url else ""
    return (
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\">"
        f'<h2 style="color:{color};margin:0 0 8px">{e(event_title(n))}</h2>'
        f"<p>{e(n.summary)}</p><table>{table}</table>{link}"
        f'<p style="color:#777;font-size:small">Alert {e(n.alert_id)}</p></body></html>'
    )


def _msgid(n: Notification, recipient: str) -> str:
    # Deterministic per (idempotency key, recipient): a retried send carries the same
    # Message-ID, so mail systems and clients can drop the duplicate.
    h = hashlib.sha256(f"{n.idempotency_key}\0{recipient}".encode()).hexdigest()[:32]
    return f"<{h}@pulse.alerts>"


def build_message(n: Notification, cfg: EmailConfig, recipients: list[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = _subject(n, cfg.subject_prefix)
    msg["From"] = cfg.from_addr
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(n.at)
    msg["Message-ID"] = _msgid(n, ",".join(recipients))
    # Every event of one alert threads together in the reader's mailbox.
    thread = f"<alert-{n.alert_id}@pulse.alerts>"
    msg["References"] = thread
    msg["In-Reply-To"] = thread
    msg["X-Pulse-Alert-Id"] = n.alert_id
    msg["X-Pulse-Event"] = n.event
    msg["X-Pulse-Idempotency-Key"] = n.idempotency_key
    msg.set_content(render_text(n))
    msg.add_alternative(render_html(n), subtype="html")
    return msg


def _tls_context(cfg: EmailConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cfg.ca_file)
    if not cfg.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _is_permanent(code: int) -> bool:
    return 500 <= code < 600  # SMTP 5yz = permanent negative completion; 4yz = transient


def _send_blocking(cfg: EmailConfig, messages: list[tuple[list[str], EmailMessage]], creds: tuple[str, str] | None):
    """Runs in a worker thread. Returns (last reply code, failures [(rcpt, code, text)])."""
    port = cfg.effective_port
    if cfg.security == "ssl":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, port, timeout=cfg.timeout_s, context=_tls_context(cfg))
    else:
        smtp = smtplib.SMTP(cfg.host, port, timeout=cfg.timeout_s)
    failures: list[tuple[str, int, str]] = []
    try:
        smtp.ehlo()
        if cfg.security == "starttls":
            smtp.starttls(context=_tls_context(cfg))
            smtp.ehlo()
        if creds:
            smtp.login(*creds)
        for rcpts, msg in messages:
            try:
                refused = smtp.send_message(msg, from_addr=cfg.from_addr, to_addrs=rcpts)
            except smtplib.SMTPRecipientsRefused as exc:
                refused = exc.recipients
            for rcpt, (code, text) in refused.items():
                failures.append((rcpt, code, text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)))
        try:
            smtp.quit()
        except smtplib.SMTPException:
            pass  # messages are already accepted; a rude QUIT changes nothing
    finally:
        smtp.close()
    return failures


class EmailChannel(Channel):
    type = "email"
    Config = EmailConfig
    config: EmailConfig

    def overall_timeout_s(self) -> float:
        # smtplib's timeout is per socket operation; a session is connect, EHLO, TLS, AUTH
        # and one transaction per message. Cutting it short would leave the thread sending
        # while the worker already retries (duplicates), so bound it generously.
        n_messages = len(self.config.to) if self.config.mode == "per_recipient" else 1
        return self.config.timeout_s * (4 + n_messages) + 2.0

    def describe(self) -> str:
        return f"email via {self.config.host}:{self.config.effective_port} to {len(self.config.to)} recipient(s)"

    async def _deliver(self, n: Notification, ctx: SendContext) -> DeliveryResult:
        cfg = self.config
        creds = (ctx.secret(cfg.username), ctx.secret(cfg.password)) if cfg.username and cfg.password else None
        if cfg.mode == "per_recipient":
            messages = [([r], build_message(n, cfg, [r])) for r in cfg.to]
        else:
            messages = [(list(cfg.to), build_message(n, cfg, list(cfg.to)))]
        try:
            failures = await asyncio.to_thread(_send_blocking, cfg, messages, creds)
        except smtplib.SMTPAuthenticationError as exc:
            raise ChannelError(f"SMTP authentication failed: {exc.smtp_code}", permanent=True) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise ChannelError(f"SMTP server does not support it: {exc}", permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            return DeliveryResult(
                ok=False, status_code=exc.smtp_code, error=f"SMTP {exc.smtp_code}: {text}",
                permanent=_is_permanent(exc.smtp_code),
            )
        except (socket.timeout, TimeoutError):
            raise ChannelError(f"timeout after {cfg.timeout_s:g}s") from None
        except ssl.SSLCertVerificationError as exc:
            raise ChannelError(f"TLS certificate verification failed: {exc.verify_message}", permanent=True) from None
        except (OSError, smtplib.SMTPException) as exc:  # refused, reset, server hung up: transient
            raise ChannelError(f"{type(exc).__name__}: {exc}") from None
        if failures:
            # Some recipients may have been accepted; a retry resends to them too, but with
            # the same Message-ID, so duplicates are recognisable.
            detail = "; ".join(f"{r}: {c} {t}" for r, c, t in failures)
            return DeliveryResult(
                ok=False,
                status_code=failures[0][1],
                error=f"{len(failures)} of {len(cfg.to)} recipient(s) refused: {detail}",
                permanent=all(_is_permanent(c) for _, c, _ in failures),
            )
        return DeliveryResult(ok=True, status_code=250)
