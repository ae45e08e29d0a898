"""Routing (order, continue), grouping (group_wait batches), notify-on-resolve via
PagerDuty (same dedup_key) and email through a real aiosmtpd server."""

from __future__ import annotations

import email
import json
import socket
import threading
import time

import pytest
from aiosmtpd.controller import Controller

from alerting.notify import Worker
from tests.alerting.notify.conftest import apply_yaml, fast_settings, hook, q, raise_event, running_worker, wait_for

pytestmark = pytest.mark.timescale


def test_routes_continue_and_group_wait_batches(db, receivers):
    a, b, c = receivers(), receivers(), receivers()
    apply_yaml(db, "channels:\n" + hook("a", a) + hook("b", b) + hook("c", c) + """routes:
  - id: critical
    match: {severity: critical}
    channels: [a]
    continue: true
  - id: by-site
    match: {tenant: acme}
    channels: [b]
    group_by: [site]
    group_wait: 1s
    group_interval: 1m
  - id: never
    channels: [c]
""")
    with running_worker(db):
        t0 = time.monotonic()
        a1, _ = raise_event(db, site="s1")
        a2, _ = raise_event(db, site="s1")
        a3, _ = raise_event(db, site="s2", severity="warning")
        wait_for(lambda: len(a.requests) == 2, 5, what="direct critical route")
        assert len(b.requests) == 0  # still inside group_wait
        wait_for(lambda: len(b.requests) == 2, 5, what="two group notifications")
        assert time.monotonic() - t0 >= 0.9
        time.sleep(0.3)
    assert len(c.requests) == 0  # 'by-site' matched without continue: later routes never see it
    bodies = sorted((json.loads(r.body) for r in b.requests), key=lambda d: d["labels"]["site"])
    assert [d["labels"]["site"] for d in bodies] == ["s1", "s2"]
    s1 = bodies[0]["extra"]["group"]
    assert sorted(x["alert_id"] for x in s1["alerts"]) == sorted([a1, a2])  # batched: one notification
    assert bodies[0]["summary"].startswith("2 alert(s)")
    assert [x["alert_id"] for x in bodies[1]["extra"]["group"]["alerts"]] == [a3]
    assert {json.loads(r.body)["alert_id"] for r in a.requests} == {a1, a2}
    [(groups,)] = q(db, "select count(*) from notification_groups where next_flush_at is not null")
    assert groups == 2  # firing groups stay armed for repeat_interval


def test_notify_on_resolve_pagerduty_same_dedup_key(db, receivers):
    pd, quiet = receivers(), receivers()
    apply_yaml(db, "channels:\n" + hook("quiet", quiet) + f"""  - id: pd
    type: pagerduty
    routing_key: {{env: T_PD_KEY}}
    events_url: {pd.url}/v2/enqueue
routes:
  - id: page
    channels: [pd]
    continue: true
  - id: no-resolve
    channels: [quiet]
    notify_on_resolve: false
""")
    alert_id, _ = raise_event(db)
    with Worker(db, settings=fast_settings()) as w:
        w.drain()
        raise_event(db, alert_id, from_state="firing", to_state="resolved")
        w.drain()
    events = [json.loads(r.body) for r in pd.requests]
    assert [e["event_action"] for e in events] == ["trigger", "resolve"]
    assert events[0]["dedup_key"] == events[1]["dedup_key"] == alert_id
    assert events[1]["routing_key"] == "pd-routing-key-xyz"
    assert [json.loads(r.body)["event"] for r in quiet.requests] == ["firing"]
    # The secret never reaches the delivery log.
    assert not q(db, "select 1 from deliveries where payload::text like '%%pd-routing-key%%'")


class _Inbox:
    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_email_route_and_user_contact_address(db):
    inbox = _Inbox()
    port = _free_port()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        apply_yaml(db, f"""users:
  - id: carol
    contact: [{{channel: mail, address: carol@example.com}}]
channels:
  - id: mail
    type: email
    host: 127.0.0.1
    port: {port}
    security: none
    from_addr: pulse@example.com
    to: [ops@example.com]
escalation_policies:
  - id: pol
    name: Ops
    levels:
      - targets: [{{user: carol}}]
routes:
  - id: mail-all
    channels: [mail]
    escalation: pol
""")
        raise_event(db)
        with Worker(db, settings=fast_settings()) as w:
            w.drain()
            w.drain()  # escalation level 1 (delay 0) is due right away
        wait_for(lambda: len(inbox.messages) == 2, 5, what="two emails")
    finally:
        ctl.stop()
    by_rcpt = {tuple(r): m for r, m in inbox.messages}
    assert set(by_rcpt) == {("ops@example.com",), ("carol@example.com",)}
    msg = by_rcpt[("ops@example.com",)]
    assert "FIRING" in msg["Subject"] and msg.is_multipart()
    assert {p.get_content_type() for p in msg.walk()} >= {"text/plain", "text/html"}
