"""Routes: ordered label matchers → channels and/or an escalation policy.

A route matches when every matcher matches the alert's labels (tenant, site, severity,
rule, state, device tags, rule labels). Routes are tried in order; the first match wins
unless it says ``continue: true``, in which case later routes are tried as well.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alerting.rules import Duration

Matcher = str | list[str]


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.:\-]+$")
    match: dict[str, Matcher] = Field(
        default_factory=dict,
        description="label -> value, list of values, or '~regex'; all must match (empty matches everything)",
    )
    channels: list[str] = Field(default_factory=list, description="channel ids notified directly")
    escalation: str | None = Field(default=None, description="escalation policy id")
    continue_: bool = Field(default=False, alias="continue", description="keep trying later routes")
    group_by: list[str] = Field(default_factory=list, description="labels that group alerts into one notification")
    group_wait: Duration = Field(default=0.0, description="wait before the first notification of a new group")
    group_interval: Duration = Field(default=300.0, description="wait before notifying a group about new alerts")
    repeat_interval: Duration = Field(default=4 * 3600.0, description="re-notify a still-firing group")
    notify_on_resolve: bool = True

    @field_validator("match")
    @classmethod
    def _regexes_compile(cls, value: dict[str, Matcher]) -> dict[str, Matcher]:
        for label, matcher in value.items():
            for item in matcher if isinstance(matcher, list) else [matcher]:
                if item.startswith("~"):
                    try:
                        re.compile(item[1:])
                    except re.error as exc:
                        raise ValueError(f"{label}: bad regular expression {item[1:]!r}: {exc}") from None
        return value


def matcher_matches(matcher: Matcher, value: Any) -> bool:
    if value is None:
        return False
    text = str(value)
    for item in matcher if isinstance(matcher, list) else [matcher]:
        if item.startswith("~"):
            if re.fullmatch(item[1:], text):
                return True
        elif item == text:
            return True
    return False


def route_matches(route: Route, labels: dict[str, Any]) -> bool:
    return all(matcher_matches(m, labels.get(label)) for label, m in route.match.items())


def select_routes(routes: list[Route], labels: dict[str, Any]) -> list[Route]:
    """The routes an alert with these labels goes to, in order."""
    chosen = []
    for route in routes:
        if route_matches(route, labels):
            chosen.append(route)
            if not route.continue_:
                break
    return chosen
