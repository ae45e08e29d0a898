"""Slack incoming webhook: Block Kit message with a plain ``text`` fallback."""

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

_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}
_EVENT_EMOJI = {"resolved": ":white_check_mark:", "acknowledged": ":eyes:", "test": ":test_tube:"}


class SlackConfig(ChannelConfigBase):
    type: Literal["slack"] = "slack"
    # The incoming-webhook URL is itself the credential (token in the path).
    webhook_url: SecretRef


def _mrkdwn_escape(s: str) -> str:
    # Slack mrkdwn treats &, <, > as control characters.
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_slack_payload(n: Notification) -> dict[str, Any]:
    title = event_title(n)
    emoji = _EVENT_EMOJI.get(n.event, _EMOJI[n.severity])
    e = _mrkdwn_escape
    blocks: list[dict[str, Any]] = [
        # header text is plain_text, max 150 chars
        {"type": "header", "text": {"type": "plain_text", "text": f"{emoji} {title}"[:150], "emoji": True}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Severity*\n{e(n.severity)}"},
                {"type": "mrkdwn", "text": f"*Device*\n{e(n.target_label)}"},
                {"type": "mrkdwn", "text": f"*Rule*\n{e(n.rule_name)}"},
                {"type": "mrkdwn", "text": f"*Value*\n{e(format_value(n.value))}"},
            ],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": e(n.summary)[:3000] or " "}},
    ]
    if n.url:
        blocks.append(
            {
                "type": "actions",
                "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open alert"}, "url": n.url}],
            }
        )
    ctx = f"tenant {e(n.tenant_id)}"
    if n.site_id:
        ctx += f" · site {e(n.site_id)}"
    ctx += f" · {n.event} at {n.at.isoformat()} · alert {n.alert_id}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": ctx}]})
    # `text` is what notifications, screen readers and old clients show.
    return {"text": f"{title}: {n.summary}", "blocks": blocks}


class SlackChannel(Channel):
    type = "slack"
    Config = SlackConfig
    config: SlackConfig

    def describe(self) -> str:
        return f"slack (url from ${self.config.webhook_url.env})"

    async def _deliver(self, n: Notification, ctx: SendContext) -> DeliveryResult:
        url = ctx.secret(self.config.webhook_url)
        return await post_json(url, build_slack_payload(n), timeout_s=self.config.timeout_s)
