"""MQTT publish (paho-mqtt 2, CallbackAPIVersion.VERSION2): JSON payload, QoS 1, no retain.

The attempt succeeds only when the broker's PUBACK (QoS 1) / PUBCOMP (QoS 2) has arrived,
so "ok" means the broker owns the message.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import string
import threading
import uuid
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from pydantic import Field, field_validator

from alerting.channels.base import (
    Channel,
    ChannelConfigBase,
    ChannelError,
    DeliveryResult,
    Notification,
    SecretRef,
    SendContext,
)

TOPIC_FIELDS = frozenset({"tenant_id", "severity", "event", "rule_id", "device_id", "site_id", "alert_id"})


class MqttConfig(ChannelConfigBase):
    type: Literal["mqtt"] = "mqtt"
    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    topic_template: str = "pulse/alerts/{tenant_id}/{severity}"
    qos: Literal[1, 2] = 1  # acknowledged QoS only: QoS 0 would make "ok" meaningless
    username: SecretRef | None = None
    password: SecretRef | None = None
    tls: bool = False
    ca_file: str | None = None
    client_id_prefix: str = "pulse-notify"
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("topic_template")
    @classmethod
    def _check_template(cls, v: str) -> str:
        names = set()
        for _, name, spec, conv in string.Formatter().parse(v):
            if name is None:
                continue
            if name not in TOPIC_FIELDS or spec or conv:
                raise ValueError(f"unknown placeholder {{{name}}}; allowed: {', '.join(sorted(TOPIC_FIELDS))}")
            names.add(name)
        if "+" in v or "#" in v:
            raise ValueError("a publish topic cannot contain the wildcards + or #")
        if not v or v.startswith("$"):
            raise ValueError("topic must be non-empty and not start with $ (broker-reserved)")
        return v


def _segment(value: str | None, default: str) -> str:
    # A value must stay one topic level and never become a wildcard.
    s = (value or default).replace("/", "_").replace("+", "_").replace("#", "_")
    return s or default


def render_topic(template: str, n: Notification) -> str:
    return template.format(
        tenant_id=_segment(n.tenant_id, "unknown"),
        severity=n.severity,
        event=n.event,
        rule_id=_segment(n.rule_id, "unknown"),
        device_id=_segment(n.device_id, "fleet"),
        site_id=_segment(n.site_id, "none"),
        alert_id=_segment(n.alert_id, "unknown"),
    )


def _publish_blocking(
    cfg: MqttConfig, topic: str, payload: bytes, creds: tuple[str | None, str | None] | None, client_id: str
) -> None:
    """Connect, publish, wait for the ack, disconnect. Runs in a worker thread because
    paho's network loop is blocking; a connection per attempt keeps no state that could
    go stale between (rare) alerts."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    if creds:
        client.username_pw_set(*creds)
    if cfg.tls:
        client.tls_set_context(ssl.create_default_context(cafile=cfg.ca_file))
    connected = threading.Event()
    outcome: dict[str, object] = {}

    def on_connect(_c, _u, _flags, reason_code, _props):
        outcome["connect"] = reason_code
        connected.set()

    client.on_connect = on_connect
    client.connect_timeout = cfg.timeout_s
    try:
        client.connect(cfg.host, cfg.port, keepalive=max(5, int(cfg.timeout_s * 2)))
    except (OSError, ValueError) as exc:
        raise ChannelError(f"cannot connect to MQTT broker {cfg.host}:{cfg.port}: {exc}") from None
    client.loop_start()
    try:
        if not connected.wait(cfg.timeout_s):
            raise ChannelError(f"timeout after {cfg.timeout_s:g}s waiting for CONNACK")
        rc = outcome["connect"]
        if rc.is_failure:
            # Bad credentials / not authorised will not fix themselves; server trouble might.
            permanent = rc.value in (0x84, 0x85, 0x86, 0x87, 0x04, 0x05)
            raise ChannelError(f"MQTT connect refused: {rc}", permanent=permanent)
        info = client.publish(topic, payload, qos=cfg.qos, retain=False)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ChannelError(f"MQTT publish failed: {mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(timeout=cfg.timeout_s)
        except (RuntimeError, ValueError) as exc:  # connection lost / message rejected before sending
            raise ChannelError(f"MQTT publish failed: {exc}") from None
        if not info.is_published():
            raise ChannelError(f"timeout after {cfg.timeout_s:g}s waiting for PUBACK")
    finally:
        client.disconnect()
        client.loop_stop()


class MqttChannel(Channel):
    type = "mqtt"
    Config = MqttConfig
    config: MqttConfig

    def overall_timeout_s(self) -> float:
        # CONNACK wait + PUBACK wait, each up to timeout_s.
        return 2 * self.config.timeout_s + 2.0

    def describe(self) -> str:
        return f"mqtt {self.config.host}:{self.config.port} {self.config.topic_template}"

    async def _deliver(self, n: Notification, ctx: SendContext) -> DeliveryResult:
        cfg = self.config
        creds = None
        if cfg.username is not None:
            creds = (ctx.secret(cfg.username), ctx.secret(cfg.password) if cfg.password else None)
        topic = render_topic(cfg.topic_template, n)
        payload = json.dumps(n.to_json_dict(), separators=(",", ":"), sort_keys=True).encode("utf-8")
        # Unique per attempt: two attempts sharing an id would kick each other off the broker.
        client_id = f"{cfg.client_id_prefix}-{uuid.uuid4().hex[:12]}"
        await asyncio.to_thread(_publish_blocking, cfg, topic, payload, creds, client_id)
        return DeliveryResult(ok=True)
