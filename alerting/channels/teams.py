"""Microsoft Teams: an Adaptive Card (1.4) posted to a Power Automate Workflows webhook."""

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
    event_title,
    format_value,
)

ADAPTIVE_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
# Adaptive Card colors: attention=red, warning=amber, good=green, accent=blue.
_COLOR = {"critical": "attention", "warning": "warning", "info": "accent"}


class TeamsConfig(ChannelConfigBase):
    type: Literal["teams"] = "teams"
    # Workflows URLs carry a `sig=` token in the query string: treat as a secret.
    webhook_url: SecretRef


def build_teams_payload(n: Notification) -> dict[str, Any]:
    color = "good" if n.event == "resolved" else _COLOR[n.severity]
    facts = [
        {"title": "Severity", "value": n.severity},
        {"title": "Device", "value": n.target_label},
        {"title": "Rule", "value": n.rule_name},
        {"title": "Value", "value": format_value(n.value)},
        {"title": "Tenant", "value": n.tenant_id},
    ]
    if n.site_id:
        facts.append({"title": "Site", "value": n.site_id})
    facts.append({"title": "Since", "value": n.started_at.isoformat()})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": event_title(n),
                "weight": "Bolder",
                "size": "Medium",
                "color": color,
                "wrap": True,
                "style": "heading",
            },
            {"type": "TextBlock", "text": n.summary, "wrap": True},
            {"type": "FactSet", "facts": facts},
            {
                "type": "TextBlock",
                "text": f"alert {n.alert_id} · {n.event} at {n.at.isoformat()}",
                "isSubtle": True,
                "size": "Small",
                "wrap": True,
            },
        ],
    }
    if n.url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open alert", "url": n.url}]
    # Workflows' "post to a channel when a webhook request is received" expects the
    # Bot Framework message envelope with the card as an attachment.
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD_CONTENT_TYPE, "contentUrl": None, "content": card}],
    }


class TeamsChannel(Channel):
    type = "teams"
    Config = TeamsConfig
    config: TeamsConfig

    def describe(self) -> str:
        return f"teams (url from ${self.config.webhook_url.env})"

    async def _deliver(self, n: Notification, ctx: SendContext) -> DeliveryResult:
        url = ctx.secret(self.config.webhook_url)
        return await post_json(url, build_teams_payload(n), timeout_s=self.config.timeout_s)
