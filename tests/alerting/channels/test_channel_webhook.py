"""Signed HTTP webhook against a real local server, including key rotation and the
receiver snippet published in docs/webhooks.md."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.channels import build_channel, verify_signature
from alerting.channels.webhook import WebhookChannel, compute_signature, sign

DOCS = Path(__file__).resolve().parents[3] / "docs" / "webhooks.md"
OLD_KEY, NEW_KEY = "whsec_old_0123456789", "whsec_new_9876543210"


def send(channel, n):
    return asyncio.run(channel.send(n))


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("T_HOOK_KEY_OLD", OLD_KEY)
    monkeypatch.setenv("T_HOOK_KEY_NEW", NEW_KEY)
    monkeypatch.setenv("T_HOOK_BEARER", "Bearer tok-abc")


def webhook(url, *key_envs, **extra):
    return build_channel("webhook", {"url": url, "signing_keys": [{"env": k} for k in key_envs], **extra})


def test_request_headers_body_and_signature(keys, http_receiver, make_notification):
    ch = webhook(
        http_receiver.url + "/pulse", "T_HOOK_KEY_OLD",
        headers={"Authorization": {"env": "T_HOOK_BEARER"}, "X-Team": "ops"},
    )
    n = make_notification(event="acknowledged")
    before = int(time.time())
    res = send(ch, n)
    assert res.ok and res.status_code == 200
    [req] = http_receiver.requests
    h = req.headers
    assert h["Content-Type"] == "application/json"
    assert h["X-Pulse-Event"] == "acknowledged"
    assert h["X-Pulse-Idempotency-Key"] == n.idempotency_key
    assert h["Authorization"] == "Bearer tok-abc" and h["X-Team"] == "ops"
    ts = int(h["X-Pulse-Timestamp"])
    assert before <= ts <= int(time.time())
    assert h["X-Pulse-Signature"] == "v1=" + compute_signature(req.body, ts, OLD_KEY)
    assert verify_signature(req.body, h, OLD_KEY)
    doc = json.loads(req.body)
    assert doc == json.loads(json.dumps(n.to_json_dict()))
    assert doc["alert_id"] == n.alert_id and doc["event"] == "acknowledged" and doc["version"] == 1


def test_key_rotation_two_signatures_each_verifies(keys, http_receiver, make_notification):
    send(webhook(http_receiver.url, "T_HOOK_KEY_OLD", "T_HOOK_KEY_NEW"), make_notification())
    req = http_receiver.requests[0]
    parts = req.headers["X-Pulse-Signature"].split(",")
    assert len(parts) == 2 and all(re.fullmatch(r"v1=[0-9a-f]{64}", p) for p in parts)
    # A receiver on either side of the rotation accepts; one with an unknown key does not.
    assert verify_signature(req.body, req.headers, OLD_KEY)
    assert verify_signature(req.body, req.headers, NEW_KEY)
    assert verify_signature(req.body, req.headers, ["whsec_unrelated", NEW_KEY])
    assert not verify_signature(req.body, req.headers, "whsec_unrelated")


def test_tampering_and_replay_are_rejected(keys, http_receiver, make_notification):
    send(webhook(http_receiver.url, "T_HOOK_KEY_OLD"), make_notification())
    req = http_receiver.requests[0]
    headers = {k: v for k, v in req.headers.items()}
    ts = int(headers["X-Pulse-Timestamp"])
    assert not verify_signature(req.body.replace(b"critical", b"info"), headers, OLD_KEY)
    assert not verify_signature(req.body, {**headers, "X-Pulse-Timestamp": str(ts + 1)}, OLD_KEY)
    assert not verify_signature(req.body, headers, OLD_KEY, now=ts + 301)
    assert verify_signature(req.body, headers, OLD_KEY, now=ts + 299)
    assert not verify_signature(req.body, {"X-Pulse-Signature": headers["X-Pulse-Signature"]}, OLD_KEY)
    # lower-case header names from a plain dict still verify
    assert verify_signature(req.body, {k.lower(): v for k, v in headers.items()}, OLD_KEY)


def test_docs_receiver_snippet_verifies_real_request(keys, http_receiver, make_notification):
    text = DOCS.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    [snippet] = [b for b in blocks if "def verify_pulse_signature" in b]
    assert len(snippet.strip().splitlines()) <= 12  # the doc promises a short snippet
    ns: dict = {}
    exec(compile(snippet, str(DOCS), "exec"), ns)  # noqa: S102 - our own documentation
    verify = ns["verify_pulse_signature"]

    send(webhook(http_receiver.url, "T_HOOK_KEY_OLD", "T_HOOK_KEY_NEW"), make_notification())
    req = http_receiver.requests[0]
    assert verify(req.body, req.headers, OLD_KEY) is True
    assert verify(req.body, req.headers, NEW_KEY) is True
    assert verify(req.body, req.headers, "wrong") is False
    assert verify(req.body + b" ", req.headers, OLD_KEY) is False


def test_old_timestamp_rejected_by_snippet_semantics(keys, http_receiver, make_notification):
    # A sender clock 10 minutes behind produces a request outside the 5-minute window.
    ch = WebhookChannel(
        webhook(http_receiver.url, "T_HOOK_KEY_OLD").config, clock=lambda: time.time() - 600
    )
    send(ch, make_notification())
    req = http_receiver.requests[0]
    assert not verify_signature(req.body, req.headers, OLD_KEY)
    assert verify_signature(req.body, req.headers, OLD_KEY, tolerance_s=900)


def test_retry_has_same_idempotency_key_and_fresh_signature(keys, http_receiver, make_notification):
    from tests.alerting.channels.receivers import Reply

    http_receiver.replies = [Reply(status=502)]
    ch = webhook(http_receiver.url, "T_HOOK_KEY_OLD")
    n = make_notification()
    first, second = send(ch, n), send(ch, n)
    assert first.retryable and second.ok
    a, b = http_receiver.requests
    assert a.headers["X-Pulse-Idempotency-Key"] == b.headers["X-Pulse-Idempotency-Key"] == n.idempotency_key
    assert a.body == b.body


def test_config_rejects_overriding_pulse_headers_and_unsigned():
    from alerting.channels import ChannelConfigError

    with pytest.raises(ChannelConfigError, match=r"headers: .*X-Pulse-Signature"):
        build_channel("webhook", {"url": "https://x", "signing_keys": [{"env": "K"}],
                                  "headers": {"X-Pulse-Signature": "v1=forged"}})
    with pytest.raises(ChannelConfigError, match=r"signing_keys: "):
        build_channel("webhook", {"url": "https://x", "signing_keys": []})
    with pytest.raises(ChannelConfigError, match=r"url: "):
        build_channel("webhook", {"url": "ftp://x", "signing_keys": [{"env": "K"}]})


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=300), key=st.text(min_size=1, max_size=40), ts=st.integers(0, 2**33),
       flip=st.integers(0, 10_000))
def test_sign_verify_roundtrip_and_bitflip(body, key, ts, flip):
    headers = {"X-Pulse-Timestamp": str(ts), "X-Pulse-Signature": sign(body, ts, [key])}
    assert verify_signature(body, headers, key, now=ts)
    if body:
        i = flip % len(body)
        tampered = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1:]
        assert not verify_signature(tampered, headers, key, now=ts)
