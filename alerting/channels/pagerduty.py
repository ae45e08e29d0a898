"""PagerDuty Events API v2: trigger / acknowledge / resolve, ``dedup_key`` = alert id."""

from __future__ import annotations

from typing import Any, Literal

from alerting.channels._http import post_json
from alerting.channels.base import (
    Channel,
    ChannelConfigBase,
    DeliveryResult,
    Notification,
    SecretRef,
    SendContext,
    format_value,
)

DEFAULT_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"

# Which Pulse events become which PagerDuty action. A reminder or a flapping start
# re-triggers the same dedup_key (PagerDuty folds it into the open incident);
# flapping_ended carries no state change PagerDuty can act on, so it is skipped
# (the resolve that follows closes the incident).
EVENT_ACTIONS: dict[str, str | None] = {
    "firing": "trigger",
    "reminder": "trigger",
    "flapping": "trigger",
    "test": "trigger",
    "acknowledged": "acknowledge",
    "resolved": "resolve",
    "flapping_ended": None,
}
# PagerDuty accepts critical/error/warning/info; Pulse severities map one to one.
SEVERITY_MAP = {"critical": "critical", "warning": "warning", "info": "info"}


class PagerDutyConfig(ChannelConfigBase):
    type: Literal["pagerduty"] = "pagerduty"
    routing_key: SecretRef  # the integration key of a service's Events API v2 integration
    events_url: str = DEFAULT_EVENTS_URL


def dedup_key(n: Notification) -> str:
    # A test send must not merge into (or resolve) a real incident of the same alert.
    return f"{n.alert_id}:test" if n.event == "test" else n.alert_id


def build_pagerduty_event(n: Notification, routing_key: str) -> dict[str, Any] | None:
    action = EVENT_ACTIONS[n.event]
    if action is None:
        return None
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": action, "dedup_key": dedup_key(n)}
    if action != "trigger":
        return body  # acknowledge/resolve only need the key (payload would be ignored)
    prefix = "[TEST] " if n.event == "test" else ""
    body["payload"] = {
        "summary": f"{prefix}{n.rule_name} on {n.target_label}: {n.summary}"[:1024],  # PD limit
        "source": n.device_id or f"fleet:{n.tenant_id}",
        "severity": SEVERITY_MAP[n.severity],
        "timestamp": n.started_at.isoformat(),
        "component": n.rule_name,
        "group": n.site_id or n.tenant_id,
        "class": n.rule_id,
        "custom_details": {
            "alert_id": n.alert_id,
            "event": n.event,
            "event_id": n.event_id,
            "tenant_id": n.tenant_id,
            "site_id": n.site_id,
            "device_id": n.device_id,
            "rule_id": n.rule_id,
            "value": format_value(n.value),
            "labels": dict(n.labels),
            "at": n.at.isoformat(),
        },
    }
    body["client"] = "OpsConductor Pulse"
    if n.url:
        body["client_url"] = n.url
        body["links"] = [{"href": n.url, "text": "Open alert in Pulse"}]
    return body


class PagerDutyChannel(Channel):
    type = "pagerduty"
    Config = PagerDutyConfig
    config: PagerDutyConfig

    def describe(self) -> str:
        return f"pagerduty (key from ${self.config.routing_key.env})"

    async def _deliver(self, n: Notification, ctx: SendContext) -> DeliveryResult:
        event = build_pagerduty_event(n, "")  # decide before touching the secret
        if event is None:
            return DeliveryResult(ok=True, skipped=True)
        event["routing_key"] = ctx.secret(self.config.routing_key)
        return await post_json(self.config.events_url, event, timeout_s=self.config.timeout_s)
