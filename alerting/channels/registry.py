"""Channel type registry: one place that maps ``type`` to plugin and config model."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError

from alerting.channels.base import Channel, ChannelConfigBase
from alerting.channels.mqtt import MqttChannel, MqttConfig
from alerting.channels.pagerduty import PagerDutyChannel, PagerDutyConfig
from alerting.channels.slack import SlackChannel, SlackConfig
from alerting.channels.smtp import EmailChannel, EmailConfig
from alerting.channels.snmp import SnmpConfig, SnmpTrapChannel
from alerting.channels.teams import TeamsChannel, TeamsConfig
from alerting.channels.webhook import WebhookChannel, WebhookConfig

CHANNEL_TYPES: dict[str, type[Channel]] = {
    "slack": SlackChannel,
    "pagerduty": PagerDutyChannel,
    "teams": TeamsChannel,
    "webhook": WebhookChannel,
    "email": EmailChannel,
    "snmp": SnmpTrapChannel,
    "mqtt": MqttChannel,
}

# For YAML/config-as-code: `type:` picks the model, so errors name the right fields.
ChannelConfig = Annotated[
    Union[SlackConfig, PagerDutyConfig, TeamsConfig, WebhookConfig, EmailConfig, SnmpConfig, MqttConfig],
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(ChannelConfig)


class ChannelConfigError(ValueError):
    """Invalid channel configuration; ``errors`` lists (field path, message)."""

    def __init__(self, channel_type: str, errors: list[tuple[str, str]]) -> None:
        self.channel_type = channel_type
        self.errors = errors
        lines = "; ".join(f"{path}: {msg}" for path, msg in errors)
        super().__init__(f"invalid {channel_type} channel config: {lines}")


def _errors(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):  # input may hold a secret
        # The discriminator tag ('slack', ...) is a union branch, not a field the user wrote.
        loc = [str(p) for p in err["loc"] if p not in CHANNEL_TYPES]
        out.append((".".join(loc) or "(root)", err["msg"]))
    return out


def parse_channel_config(data: dict[str, Any]) -> ChannelConfigBase:
    """Validate a config mapping that carries its own ``type`` (the YAML form)."""
    if not isinstance(data, dict):
        raise ChannelConfigError("?", [("(root)", "must be a mapping")])
    ctype = str(data.get("type", "?"))
    if ctype not in CHANNEL_TYPES:
        raise ChannelConfigError(ctype, [("type", f"unknown channel type; expected one of {', '.join(CHANNEL_TYPES)}")])
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ChannelConfigError(ctype, _errors(exc)) from None


def build_channel(channel_type: str, config: dict[str, Any] | ChannelConfigBase) -> Channel:
    """Validated channel from a type name and its config mapping (``type`` key optional)."""
    if channel_type not in CHANNEL_TYPES:
        raise ChannelConfigError(
            channel_type, [("type", f"unknown channel type; expected one of {', '.join(CHANNEL_TYPES)}")]
        )
    cls = CHANNEL_TYPES[channel_type]
    if isinstance(config, ChannelConfigBase):
        return cls(config)
    if not isinstance(config, dict):
        raise ChannelConfigError(channel_type, [("(root)", "must be a mapping")])
    if config.get("type", channel_type) != channel_type:
        raise ChannelConfigError(channel_type, [("type", f"is {config['type']!r}, expected {channel_type!r}")])
    return cls(parse_channel_config({**config, "type": channel_type}))


def channel_from_config(config: ChannelConfigBase) -> Channel:
    return CHANNEL_TYPES[config.type](config)  # type: ignore[attr-defined]
