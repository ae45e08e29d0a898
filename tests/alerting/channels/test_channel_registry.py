"""One model, one API: registry, config validation, secrets and redaction."""

from __future__ import annotations

import asyncio
import time

import pytest
import yaml

from alerting.channels import (
    CHANNEL_TYPES,
    Channel,
    ChannelConfigError,
    DeliveryResult,
    SecretRef,
    build_channel,
    parse_channel_config,
    redact_url,
)
from alerting.channels.base import ChannelConfigBase, SendContext

YAML = """
channels:
  ops-slack: {type: slack, webhook_url: {env: OPS_SLACK_URL}}
  pd: {type: pagerduty, routing_key: {env: PD_KEY}}
  teams: {type: teams, webhook_url: {env: TEAMS_URL}}
  hook: {type: webhook, url: "https://h.example/x", signing_keys: [{env: K1}, {env: K2}]}
  mail: {type: email, host: smtp.example, from_addr: p@x.example, to: [a@x.example]}
  nms: {type: snmp, host: nms.example, community: {env: SNMP_COMMUNITY}}
  bus: {type: mqtt, host: broker.example, topic_template: "alerts/{tenant_id}/{severity}"}
"""


def test_registry_covers_all_types_and_yaml_round_trip():
    assert set(CHANNEL_TYPES) == {"slack", "pagerduty", "teams", "webhook", "email", "snmp", "mqtt"}
    docs = yaml.safe_load(YAML)["channels"]
    for name, raw in docs.items():
        cfg = parse_channel_config(raw)
        ch = build_channel(raw["type"], cfg)
        assert isinstance(ch, CHANNEL_TYPES[raw["type"]]) and isinstance(ch, Channel)
        assert ch.type == raw["type"] == cfg.type
        # same result with the type given separately and omitted from the mapping
        rest = {k: v for k, v in raw.items() if k != "type"}
        assert build_channel(raw["type"], rest).config == cfg
        assert parse_channel_config(cfg.model_dump(mode="json")) == cfg


@pytest.mark.parametrize(
    "ctype,raw,path",
    [
        ("slack", {}, "webhook_url"),
        ("slack", {"webhook_url": {"env": "X", "value": "https://hooks.slack.com/T/B/x"}}, "webhook_url.value"),
        ("slack", {"webhook_url": {"env": "1BAD"}}, "webhook_url.env"),
        ("pagerduty", {"routing_key": {"env": "K"}, "timeout_s": 0}, "timeout_s"),
        ("webhook", {"url": "https://x", "signing_keys": [{"env": "K"}, {"nope": 1}]}, "signing_keys.1.env"),
        ("email", {"host": "h", "from_addr": "a@b", "to": ["a@b"], "port": 70000}, "port"),
        ("snmp", {"host": "h", "port": "x"}, "port"),
        ("mqtt", {"host": "h", "colour": "red"}, "colour"),
    ],
)
def test_validation_errors_name_field_path(ctype, raw, path):
    with pytest.raises(ChannelConfigError) as ei:
        build_channel(ctype, raw)
    assert path in [p for p, _ in ei.value.errors], ei.value.errors
    assert ei.value.channel_type == ctype and path in str(ei.value)


def test_unknown_type_and_type_mismatch():
    with pytest.raises(ChannelConfigError, match="unknown channel type"):
        build_channel("fax", {})
    with pytest.raises(ChannelConfigError, match="unknown channel type"):
        parse_channel_config({"type": "fax"})
    with pytest.raises(ChannelConfigError, match="expected 'slack'"):
        build_channel("slack", {"type": "teams", "webhook_url": {"env": "X"}})


def test_secrets_never_in_repr_or_dump(monkeypatch):
    monkeypatch.setenv("OPS_SLACK_URL", "https://hooks.slack.com/services/T1/B2/SuperSecretToken")
    ch = build_channel("slack", {"webhook_url": {"env": "OPS_SLACK_URL"}})
    for text in (repr(ch), str(ch), repr(ch.config), ch.config.model_dump_json(), ch.describe()):
        assert "SuperSecretToken" not in text and "hooks.slack.com" not in text
    assert "OPS_SLACK_URL" in repr(ch)


def test_secret_value_never_in_validation_error():
    # A user pasting the secret where a reference belongs must not see it echoed in logs.
    with pytest.raises(ChannelConfigError) as ei:
        build_channel("slack", {"webhook_url": "https://hooks.slack.com/services/T1/B2/PastedToken"})
    assert "PastedToken" not in str(ei.value)


def test_redaction():
    assert redact_url("https://hooks.slack.com/services/T1/B2/abc") == "https://hooks.slack.com/***"
    assert redact_url("https://user:pw@example.com:8443/x?sig=1") == "https://example.com:8443/***"
    assert redact_url("http://127.0.0.1:9000") == "http://127.0.0.1:9000"
    ctx = SendContext()
    value = ctx.secret(SecretRef(env="PATH"))  # any set variable will do
    text = f"error talking to https://api.example/v1?token=zzz with {value}"
    out = ctx.redact(text)
    assert value not in out and "zzz" not in out and "https://api.example/***" in out


class _Exploding(Channel):
    type = "exploding"

    class Config(ChannelConfigBase):
        pass

    async def _deliver(self, n, ctx):
        secret = ctx.secret(SecretRef(env="T_BOOM_SECRET"))
        raise RuntimeError(f"library blew up with {secret} at https://x.example/hook/{secret}")


class _Slow(Channel):
    type = "slow"

    class Config(ChannelConfigBase):
        pass

    def overall_timeout_s(self) -> float:
        return 0.2  # keep the test fast; the default adds a 2 s margin

    async def _deliver(self, n, ctx):
        await asyncio.sleep(60)
        return DeliveryResult(ok=True)


def test_send_never_raises_and_redacts_unexpected_errors(monkeypatch, make_notification):
    monkeypatch.setenv("T_BOOM_SECRET", "s3cr3t-value")
    res = asyncio.run(_Exploding(_Exploding.Config()).send(make_notification()))
    assert not res.ok and res.retryable and res.error.startswith("RuntimeError")
    assert "s3cr3t-value" not in res.error and "https://x.example/***" in res.error


def test_send_enforces_overall_timeout(make_notification):
    t0 = time.perf_counter()
    res = asyncio.run(_Slow(_Slow.Config(timeout_s=0.1)).send(make_notification()))
    assert time.perf_counter() - t0 < 2
    assert not res.ok and res.retryable and "timeout after 0.2s" in res.error


def test_channel_rejects_wrong_config_type():
    from alerting.channels.slack import SlackChannel
    from alerting.channels.teams import TeamsConfig

    with pytest.raises(TypeError):
        SlackChannel(TeamsConfig(webhook_url=SecretRef(env="X")))


def test_notification_validates_event_and_severity(make_notification):
    with pytest.raises(ValueError, match="event"):
        make_notification(event="exploded")
    with pytest.raises(ValueError, match="severity"):
        make_notification(severity="fatal")
    n = make_notification(device_id=None)
    assert n.target_label == "fleet"
    doc = n.to_json_dict()
    assert doc["started_at"] == "2025-03-01T12:00:00+00:00" and doc["device_id"] is None


def test_delivery_result_retryable_flag():
    assert DeliveryResult(ok=False).retryable
    assert not DeliveryResult(ok=False, permanent=True).retryable
    assert not DeliveryResult(ok=True).retryable
