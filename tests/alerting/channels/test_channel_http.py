"""Slack, Teams, PagerDuty and the shared HTTP status mapping, against a real local server."""

from __future__ import annotations

import asyncio
import json
import time
from email.utils import format_datetime
from datetime import datetime, timezone

import pytest
from tests.alerting.channels.receivers import Reply

from alerting.channels import build_channel
from alerting.channels._http import map_http_response, parse_retry_after


def send(channel, n):
    return asyncio.run(channel.send(n))


@pytest.fixture
def slack(http_receiver, monkeypatch):
    monkeypatch.setenv("T_SLACK_URL", http_receiver.url + "/services/T000/B000/XXXXsecretXXXX")
    return build_channel("slack", {"webhook_url": {"env": "T_SLACK_URL"}, "timeout_s": 2})


def test_slack_blocks_and_text_fallback(slack, http_receiver, make_notification):
    n = make_notification()
    res = send(slack, n)
    assert res.ok and res.status_code == 200 and res.latency_ms > 0
    [req] = http_receiver.requests
    assert req.path == "/services/T000/B000/XXXXsecretXXXX"
    assert req.headers["Content-Type"] == "application/json"
    doc = json.loads(req.body)
    assert "Temperature high" in doc["text"] and n.summary in doc["text"]
    types = [b["type"] for b in doc["blocks"]]
    assert types[0] == "header" and types[-1] == "context"
    assert doc["blocks"][0]["text"]["type"] == "plain_text"
    fields = " ".join(f["text"] for f in doc["blocks"][1]["fields"])
    for want in ("*Severity*\ncritical", "*Device*\ndev-17", "*Rule*\nTemperature high", "*Value*\n81.5"):
        assert want in fields
    assert n.alert_id in doc["blocks"][-1]["elements"][0]["text"]
    assert any(b["type"] == "actions" and b["elements"][0]["url"] == n.url for b in doc["blocks"])


def test_slack_escapes_mrkdwn_control_chars(slack, http_receiver, make_notification):
    send(slack, make_notification(summary="a < b & <!channel>", device_id=None))
    doc = json.loads(http_receiver.requests[0].body)
    assert doc["blocks"][2]["text"]["text"] == "a &lt; b &amp; &lt;!channel&gt;"
    assert "*Device*\nfleet" in doc["blocks"][1]["fields"][1]["text"]


def test_teams_adaptive_card(http_receiver, monkeypatch, make_notification):
    monkeypatch.setenv("T_TEAMS_URL", http_receiver.url + "/workflows/abc/triggers/manual/paths/invoke?sig=s3cr3t")
    http_receiver.default = Reply(status=202, body=b"")
    ch = build_channel("teams", {"webhook_url": {"env": "T_TEAMS_URL"}})
    n = make_notification(event="resolved")
    res = send(ch, n)
    assert res.ok and res.status_code == 202
    doc = json.loads(http_receiver.requests[0].body)
    assert doc["type"] == "message"
    [att] = doc["attachments"]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = att["content"]
    assert card["type"] == "AdaptiveCard" and tuple(map(int, card["version"].split("."))) >= (1, 4)
    assert card["body"][0]["text"].startswith("[RESOLVED]") and card["body"][0]["color"] == "good"
    facts = {f["title"]: f["value"] for f in card["body"][2]["facts"]}
    assert facts["Severity"] == "critical" and facts["Device"] == "dev-17" and facts["Value"] == "81.5"
    assert card["actions"][0] == {"type": "Action.OpenUrl", "title": "Open alert", "url": n.url}


@pytest.fixture
def pagerduty(http_receiver, monkeypatch):
    monkeypatch.setenv("T_PD_KEY", "R0UTINGKEY0123456789abcdef012345")
    http_receiver.default = Reply(status=202, body=b'{"status":"success","message":"Event processed"}')
    return build_channel(
        "pagerduty", {"routing_key": {"env": "T_PD_KEY"}, "events_url": http_receiver.url + "/v2/enqueue"}
    )


@pytest.mark.parametrize(
    "event,action", [("firing", "trigger"), ("acknowledged", "acknowledge"), ("resolved", "resolve")]
)
def test_pagerduty_event_actions(pagerduty, http_receiver, make_notification, event, action):
    n = make_notification(event=event, severity="warning")
    res = send(pagerduty, n)
    assert res.ok and res.status_code == 202 and "success" in res.response_excerpt
    [req] = http_receiver.requests
    assert req.path == "/v2/enqueue"
    doc = json.loads(req.body)
    assert doc["routing_key"] == "R0UTINGKEY0123456789abcdef012345"
    assert doc["event_action"] == action
    assert doc["dedup_key"] == n.alert_id
    if action == "trigger":
        p = doc["payload"]
        assert p["severity"] == "warning" and p["source"] == "dev-17" and p["component"] == "Temperature high"
        assert n.summary in p["summary"]
        assert p["custom_details"]["alert_id"] == n.alert_id and p["custom_details"]["labels"]["zone"] == "north"
        assert doc["links"][0]["href"] == n.url
    else:
        assert "payload" not in doc


def test_pagerduty_severity_mapping_and_fleet_source(pagerduty, http_receiver, make_notification):
    for sev in ("info", "warning", "critical"):
        send(pagerduty, make_notification(severity=sev, device_id=None))
    sent = [json.loads(r.body)["payload"] for r in http_receiver.requests]
    assert [p["severity"] for p in sent] == ["info", "warning", "critical"]
    assert sent[0]["source"] == "fleet:acme"


def test_pagerduty_skips_flapping_ended_without_request(pagerduty, http_receiver, make_notification):
    res = send(pagerduty, make_notification(event="flapping_ended"))
    assert res.ok and res.skipped and http_receiver.requests == []


def test_pagerduty_test_event_does_not_touch_real_incident(pagerduty, http_receiver, make_notification):
    n = make_notification(event="test")
    send(pagerduty, n)
    doc = json.loads(http_receiver.requests[0].body)
    assert doc["event_action"] == "trigger" and doc["dedup_key"] != n.alert_id
    assert doc["payload"]["summary"].startswith("[TEST]")


# --- uniform status mapping, over real HTTP -------------------------------------------


def test_429_retry_after_seconds(slack, http_receiver, make_notification):
    http_receiver.default = Reply(status=429, headers={"Retry-After": "17"}, body=b"rate_limited")
    res = send(slack, make_notification())
    assert not res.ok and not res.permanent and res.retryable
    assert res.status_code == 429 and res.retry_after_s == 17.0 and res.response_excerpt == "rate_limited"


def test_503_retry_after_http_date(slack, http_receiver, make_notification):
    when = datetime.fromtimestamp(time.time() + 120, tz=timezone.utc)
    http_receiver.default = Reply(status=503, headers={"Retry-After": format_datetime(when, usegmt=True)})
    res = send(slack, make_notification())
    assert res.status_code == 503 and res.retryable
    assert 110 <= res.retry_after_s <= 121


def test_500_retryable_without_retry_after(slack, http_receiver, make_notification):
    http_receiver.default = Reply(status=500, headers={"Retry-After": "5"}, body=b"boom")
    res = send(slack, make_notification())
    assert not res.ok and res.retryable and res.status_code == 500
    assert res.retry_after_s is None  # Retry-After is honoured on 429/503 only


def test_400_permanent(slack, http_receiver, make_notification):
    http_receiver.default = Reply(status=400, body=b"invalid_blocks")
    res = send(slack, make_notification())
    assert not res.ok and res.permanent and res.status_code == 400 and res.response_excerpt == "invalid_blocks"


def test_408_retryable(slack, http_receiver, make_notification):
    http_receiver.default = Reply(status=408)
    res = send(slack, make_notification())
    assert res.retryable and res.status_code == 408


def test_timeout_is_retryable_and_bounded(http_receiver, monkeypatch, make_notification):
    monkeypatch.setenv("T_SLACK_URL", http_receiver.url + "/hook/secret-token")
    ch = build_channel("slack", {"webhook_url": {"env": "T_SLACK_URL"}, "timeout_s": 0.3})
    http_receiver.default = Reply(delay_s=2.0)
    t0 = time.perf_counter()
    res = send(ch, make_notification())
    assert time.perf_counter() - t0 < 1.5
    assert not res.ok and res.retryable and res.status_code is None
    assert "timeout" in res.error


def test_connection_refused_is_retryable_and_redacted(monkeypatch, make_notification):
    from tests.alerting.channels.receivers import free_port

    monkeypatch.setenv("T_SLACK_URL", f"http://127.0.0.1:{free_port()}/services/T0/B0/very-secret-token")
    ch = build_channel("slack", {"webhook_url": {"env": "T_SLACK_URL"}, "timeout_s": 2})
    res = send(ch, make_notification())
    assert not res.ok and res.retryable and res.error
    assert "very-secret-token" not in res.error and "very-secret-token" not in repr(res)


def test_missing_secret_is_permanent_and_names_only_the_variable(monkeypatch, make_notification):
    monkeypatch.delenv("T_UNSET_SLACK_URL", raising=False)
    ch = build_channel("slack", {"webhook_url": {"env": "T_UNSET_SLACK_URL"}})
    res = send(ch, make_notification())
    assert not res.ok and res.permanent and "T_UNSET_SLACK_URL" in res.error


@pytest.mark.parametrize(
    "status,ok,permanent",
    [(200, True, False), (204, True, False), (301, False, True), (401, False, True), (404, False, True),
     (408, False, False), (429, False, False), (502, False, False), (599, False, False)],
)
def test_status_mapping_table(status, ok, permanent):
    r = map_http_response(status, {}, b"")
    assert (r.ok, r.permanent) == (ok, permanent)


def test_parse_retry_after_forms():
    now = 1_700_000_000.0
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(" 30 ") == 30.0
    assert parse_retry_after(format_datetime(datetime.fromtimestamp(now + 90, tz=timezone.utc), usegmt=True), now=now) == 90.0
    # A date in the past means "now", never a negative delay.
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None and parse_retry_after("-5") is None
