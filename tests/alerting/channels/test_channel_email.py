"""Email channel against a real aiosmtpd server on loopback (plain+AUTH, STARTTLS, SSL)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import ssl
import subprocess
import threading

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from tests.alerting.channels.receivers import free_port

from alerting.channels import build_channel


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []
        self.lock = threading.Lock()
        self.reject: dict[str, str] = {}  # rcpt → SMTP reply to refuse it with

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.reject:
            return self.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 Message accepted"


def _auth(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"pulse" and auth_data.password == b"pw-s3cret"
    # handled=False: let aiosmtpd send the 535 itself (True would mean "I replied already").
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    port = free_port()
    ctl = Controller(
        inbox, hostname="127.0.0.1", port=port, authenticator=_auth, auth_require_tls=False
    )
    ctl.start()
    yield inbox, port
    ctl.stop()


@pytest.fixture
def creds(monkeypatch):
    monkeypatch.setenv("T_SMTP_USER", "pulse")
    monkeypatch.setenv("T_SMTP_PASS", "pw-s3cret")


def send(channel, n):
    return asyncio.run(channel.send(n))


def email_channel(port, **over):
    cfg = {
        "host": "127.0.0.1", "port": port, "security": "none",
        "username": {"env": "T_SMTP_USER"}, "password": {"env": "T_SMTP_PASS"},
        "from_addr": "pulse@alerts.example", "to": ["a@ops.example", "b@ops.example"], "timeout_s": 5,
    }
    cfg.update(over)
    return build_channel("email", cfg)


def test_per_recipient_text_and_html(smtp_server, creds, make_notification):
    inbox, port = smtp_server
    n = make_notification(summary="temp <81.5> & rising")
    res = send(email_channel(port), n)
    assert res.ok and res.status_code == 250, res
    assert [(m[0], m[1]) for m in inbox.messages] == [
        ("pulse@alerts.example", ["a@ops.example"]),
        ("pulse@alerts.example", ["b@ops.example"]),
    ]
    _, _, msg = inbox.messages[0]
    assert msg["To"] == "a@ops.example"  # nobody sees the other recipients
    assert msg["Subject"] == "[Pulse] [FIRING] CRITICAL Temperature high on dev-17"
    assert msg["X-Pulse-Idempotency-Key"] == n.idempotency_key
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "temp <81.5> & rising" in text and "Device:   dev-17" in text and n.url in text
    assert "temp &lt;81.5&gt; &amp; rising" in html and "<table>" in html and f'href="{n.url}"' in html
    # both events of one alert thread together; message ids differ per recipient
    assert inbox.messages[0][2]["References"] == inbox.messages[1][2]["References"]
    assert inbox.messages[0][2]["Message-ID"] != inbox.messages[1][2]["Message-ID"]


def test_single_message_to_list(smtp_server, creds, make_notification):
    inbox, port = smtp_server
    res = send(email_channel(port, mode="single"), make_notification(event="resolved"))
    assert res.ok
    [(_, rcpts, msg)] = inbox.messages
    assert rcpts == ["a@ops.example", "b@ops.example"]
    assert msg["To"] == "a@ops.example, b@ops.example" and "[RESOLVED]" in msg["Subject"]


def test_retry_keeps_message_id(smtp_server, creds, make_notification):
    inbox, port = smtp_server
    ch, n = email_channel(port, to=["a@ops.example"]), make_notification()
    send(ch, n), send(ch, n)
    assert inbox.messages[0][2]["Message-ID"] == inbox.messages[1][2]["Message-ID"]


def test_bad_password_is_permanent_and_not_leaked(smtp_server, monkeypatch, make_notification):
    _, port = smtp_server
    monkeypatch.setenv("T_SMTP_USER", "pulse")
    monkeypatch.setenv("T_SMTP_PASS", "wrong-password-xyz")
    res = send(email_channel(port), make_notification())
    assert not res.ok and res.permanent and "authentication" in res.error
    assert "wrong-password-xyz" not in res.error


def test_refused_recipient_permanent_vs_transient(smtp_server, creds, make_notification):
    inbox, port = smtp_server
    inbox.reject = {"b@ops.example": "550 5.1.1 no such user"}
    res = send(email_channel(port), make_notification())
    assert not res.ok and res.permanent and res.status_code == 550 and "b@ops.example" in res.error
    assert [m[1] for m in inbox.messages] == [["a@ops.example"]]
    inbox.reject = {"b@ops.example": "452 4.2.2 mailbox full"}
    res = send(email_channel(port), make_notification())
    assert not res.ok and res.retryable and res.status_code == 452


def test_connection_refused_is_retryable(creds, make_notification):
    res = send(email_channel(free_port()), make_notification())
    assert not res.ok and res.retryable and "ConnectionRefused" in res.error


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI needed to make a throwaway certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    return str(d / "cert.pem"), ctx


def test_starttls_with_private_ca(tls_cert, creds, make_notification):
    ca_file, server_ctx = tls_cert
    inbox, port = Inbox(), free_port()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=server_ctx, require_starttls=True,
                     authenticator=_auth)  # auth only offered after STARTTLS
    ctl.start()
    try:
        res = send(email_channel(port, security="starttls", ca_file=ca_file), make_notification())
        assert res.ok, res
        assert len(inbox.messages) == 2
        # Without the CA the certificate cannot be verified: a config problem, not retried.
        res = send(email_channel(port, security="starttls"), make_notification())
        assert not res.ok and res.permanent and "certificate" in res.error
        # Plain mode against a server that requires STARTTLS fails (AUTH is not offered in clear).
        res = send(email_channel(port, security="none"), make_notification())
        assert not res.ok
    finally:
        ctl.stop()


def test_implicit_ssl(tls_cert, creds, make_notification):
    ca_file, server_ctx = tls_cert
    inbox, port = Inbox(), free_port()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port, ssl_context=server_ctx, authenticator=_auth,
                     auth_require_tls=False)
    ctl.start()
    try:
        res = send(email_channel(port, security="ssl", ca_file=ca_file, to=["x@ops.example"]), make_notification())
        assert res.ok, res
        assert [m[1] for m in inbox.messages] == [["x@ops.example"]]
    finally:
        ctl.stop()


def test_config_errors_name_fields():
    from alerting.channels import ChannelConfigError

    with pytest.raises(ChannelConfigError) as ei:
        build_channel("email", {"host": "h", "from_addr": "p@x", "to": ["nope"], "security": "tls"})
    paths = {p for p, _ in ei.value.errors}
    assert {"to", "security"} <= paths
    with pytest.raises(ChannelConfigError, match="together"):
        build_channel("email", {"host": "h", "from_addr": "p@x", "to": ["a@b"], "username": {"env": "U"}})
