"""Notification channel plugins: one model (Notification → DeliveryResult), one API
(``Channel.send``) for Slack, PagerDuty, Teams, webhooks, email, SNMP traps and MQTT."""

from alerting.channels.base import (
    Channel,
    ChannelConfigBase,
    ChannelError,
    DeliveryResult,
    Notification,
    SecretMissing,
    SecretRef,
    redact_url,
)
from alerting.channels.registry import (
    CHANNEL_TYPES,
    ChannelConfig,
    ChannelConfigError,
    build_channel,
    channel_from_config,
    parse_channel_config,
)
from alerting.channels.webhook import sign, verify_signature

__all__ = [
    "CHANNEL_TYPES",
    "Channel",
    "ChannelConfig",
    "ChannelConfigBase",
    "ChannelConfigError",
    "ChannelError",
    "DeliveryResult",
    "Notification",
    "SecretMissing",
    "SecretRef",
    "build_channel",
    "channel_from_config",
    "parse_channel_config",
    "redact_url",
    "sign",
    "verify_signature",
]
