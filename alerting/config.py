"""The platform's whole configuration file: the kernel's tenants/sites/devices plus the
alerting sections (users, rules, channels, routes, escalation policies, schedules).

Validation names the YAML path of every error (see ``pulse.config``); cross references
(route → channel, policy → user/schedule/channel, schedule → user) are checked here.
Applying stores each object in ``config_objects`` in the same transaction as the fleet.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerting.channels.registry import ChannelConfig
from alerting.escalation import EscalationPolicy
from alerting.oncall import Schedule
from alerting.routing import Route
from alerting.rules import Rule, RuleSet
from pulse import config as kernel_config

ID = r"^[A-Za-z0-9_.:\-]+$"


class ContactMethod(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    channel: str = Field(description="channel id used to reach this user")
    address: str | None = Field(default=None, description="recipient on that channel (e.g. e-mail address)")


class User(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=ID)
    name: str | None = None
    email: str | None = None
    contact: list[ContactMethod] = Field(default_factory=list)


class ChannelDefinition(BaseModel):
    """``{id, description?, type, ...settings of that channel type}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=ID)
    description: str | None = None
    settings: ChannelConfig

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        if isinstance(data, dict) and "settings" not in data:
            own = {k: data[k] for k in ("id", "description") if k in data}
            return {**own, "settings": {k: v for k, v in data.items() if k not in own}}
        return data

    @property
    def type(self) -> str:
        return self.settings.type


class PlatformConfig(kernel_config.PulseConfig):
    users: list[User] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    channels: list[ChannelDefinition] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    escalation_policies: list[EscalationPolicy] = Field(default_factory=list)
    schedules: list[Schedule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> "PlatformConfig":
        RuleSet.model_validate({"rules": [r.model_dump(by_alias=True) for r in self.rules]})
        users = _unique([u.id for u in self.users], "users")
        channels = _unique([c.id for c in self.channels], "channels")
        policies = _unique([p.id for p in self.escalation_policies], "escalation_policies")
        schedules = _unique([s.id for s in self.schedules], "schedules")
        _unique([r.id for r in self.routes], "routes")
        tenants = {t.id for t in self.tenants}
        for i, user in enumerate(self.users):
            for j, method in enumerate(user.contact):
                if method.channel not in channels:
                    raise ValueError(f"users[{i}].contact[{j}].channel: unknown channel {method.channel!r}")
        for i, route in enumerate(self.routes):
            for j, channel in enumerate(route.channels):
                if channel not in channels:
                    raise ValueError(f"routes[{i}].channels[{j}]: unknown channel {channel!r}")
            if route.escalation is not None and route.escalation not in policies:
                raise ValueError(f"routes[{i}].escalation: unknown escalation policy {route.escalation!r}")
            if not route.channels and route.escalation is None:
                raise ValueError(f"routes[{i}]: a route needs channels or an escalation policy")
        for i, policy in enumerate(self.escalation_policies):
            for j, level in enumerate(policy.levels):
                for k, target in enumerate(level.targets):
                    known = {"user": users, "schedule": schedules, "channel": channels}[target.kind]
                    if target.id not in known:
                        raise ValueError(f"escalation_policies[{i}].levels[{j}].targets[{k}].{target.kind}: "
                                         f"unknown {target.kind} {target.id!r}")
        if users:
            for i, schedule in enumerate(self.schedules):
                for j, layer in enumerate(schedule.layers):
                    for user in layer.users:
                        if user not in users:
                            raise ValueError(f"schedules[{i}].layers[{j}].users: unknown user {user!r}")
        for i, rule in enumerate(self.rules):
            tenant = rule.target.tenant
            if tenants and tenant is not None and tenant not in tenants:
                raise ValueError(f"rules[{i}].target.tenant: tenant {tenant!r} is not declared in this file")
        return self


def _unique(ids: list[str], section: str) -> set[str]:
    seen: set[str] = set()
    for i, ident in enumerate(ids):
        if ident in seen:
            raise ValueError(f"{section}[{i}].id: {ident!r} is declared twice")
        seen.add(ident)
    return seen


def _objects(cfg: PlatformConfig) -> list[tuple[str, str, int, dict]]:
    dump = lambda m: m.model_dump(mode="json", by_alias=True, exclude_none=True)  # noqa: E731
    out = [("user", u.id, 0, dump(u)) for u in cfg.users]
    out += [("rule", r.id, 0, dump(r)) for r in cfg.rules]
    out += [("channel", c.id, 0, {"id": c.id, "description": c.description, **dump(c.settings)}) for c in cfg.channels]
    out += [("route", r.id, i, dump(r)) for i, r in enumerate(cfg.routes)]
    out += [("escalation_policy", p.id, 0, dump(p)) for p in cfg.escalation_policies]
    out += [("schedule", s.id, 0, dump(s)) for s in cfg.schedules]
    return out


def apply(conn: psycopg.Connection, cfg: PlatformConfig, *, prune: bool = False) -> dict[str, Any]:
    """Apply fleet and alerting objects in one transaction. Objects whose definition did
    not change keep their version; with ``prune`` objects the file omits are deleted."""
    with conn.transaction():
        summary = kernel_config.apply(conn, cfg, prune=prune)
        objects = _objects(cfg)
        for kind, ident, position, definition in objects:
            conn.execute(
                """insert into config_objects (kind, id, position, definition) values (%s, %s, %s, %s)
                   on conflict (kind, id) do update set position = excluded.position,
                       definition = excluded.definition,
                       version = config_objects.version + (config_objects.definition <> excluded.definition)::int,
                       updated_at = case when config_objects.definition <> excluded.definition
                                         then now() else config_objects.updated_at end""",
                (kind, ident, position, Jsonb(definition)),
            )
        if prune:
            keep = {(k, i) for k, i, _, _ in objects}
            for kind, ident in conn.execute("select kind, id from config_objects").fetchall():
                if (kind, ident) not in keep:
                    conn.execute("delete from config_objects where kind = %s and id = %s", (kind, ident))
                    summary["pruned"] += 1
        counts: dict[str, int] = {}
        for kind, *_ in objects:
            counts[kind] = counts.get(kind, 0) + 1
        summary["objects"] = counts
    return summary


def load_objects(conn: psycopg.Connection, kind: str) -> list[dict]:
    """Definitions of one kind as applied (routes in their declared order)."""
    rows = conn.execute("select definition from config_objects where kind = %s order by position, id", (kind,))
    return [r[0] for r in rows]


def load(path) -> PlatformConfig:
    return kernel_config.load(path, model=PlatformConfig)


def loads(text: str, source: str = "<config>") -> PlatformConfig:
    return kernel_config.loads(text, source, model=PlatformConfig)


def json_schema() -> dict[str, Any]:
    return PlatformConfig.model_json_schema(by_alias=True)
