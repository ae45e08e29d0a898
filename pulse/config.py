"""Config as code: one YAML file declares tenants, sites and devices (and, as the platform
grows, rules, channels, routes, escalation policies and schedules).

Validation is pydantic; every error names its YAML path (``tenants[0].devices[3].site``)
and, where the YAML can be located, the line. ``pulse config apply`` applies a file in
one transaction, so a bad file changes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pulse import registry
from pulse.envelope import DEVICE_ID_RE
from pulse.errors import UserError

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
SITE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


def _check_zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Location(_Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class SiteConfig(_Strict):
    id: str = Field(pattern=SITE_PATTERN)
    name: str | None = None
    time_zone: str | None = None
    location: Location | None = None

    _zone = field_validator("time_zone")(_check_zone)


class DeviceConfig(_Strict):
    id: str = Field(pattern=DEVICE_ID_RE.pattern, description="unique within the tenant; used in the MQTT topic")
    site: str | None = None
    type: str | None = Field(default=None, description="device type (e.g. pump); selects health thresholds, models")
    name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    status: str = Field(default="active", pattern="^(active|disabled)$")


class TenantConfig(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str | None = None
    time_zone: str = "UTC"
    auto_register: bool = Field(
        default=False, description="register unknown devices that publish on this tenant's topics (trusted brokers)"
    )
    sites: list[SiteConfig] = Field(default_factory=list)
    devices: list[DeviceConfig] = Field(default_factory=list)

    _zone = field_validator("time_zone")(_check_zone)

    @model_validator(mode="after")
    def _references(self) -> "TenantConfig":
        site_ids = [s.id for s in self.sites]
        _no_duplicates(site_ids, "site")
        _no_duplicates([d.id for d in self.devices], "device")
        known = set(site_ids)
        for i, device in enumerate(self.devices):
            if device.site is not None and device.site not in known:
                raise ValueError(f"devices[{i}].site: {device.site!r} is not one of this tenant's sites {sorted(known)}")
        return self


def _no_duplicates(ids: list[str], what: str) -> None:
    seen = set()
    for ident in ids:
        if ident in seen:
            raise ValueError(f"{what} id {ident!r} is declared twice")
        seen.add(ident)


class PulseConfig(_Strict):
    """The whole declarative configuration (``pulse config schema`` prints its JSON Schema)."""

    version: int = Field(default=1, ge=1, le=1)
    tenants: list[TenantConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_tenants(self) -> "PulseConfig":
        _no_duplicates([t.id for t in self.tenants], "tenant")
        return self


def json_schema() -> dict[str, Any]:
    return PulseConfig.model_json_schema()


# ------------------------------------------------------------------ loading with YAML paths


def _yaml_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Walk the composed YAML node tree along a pydantic error location to find its line."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


_RELATIVE_PATH = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\]|\.\w+)*): (.*)$", re.S)


_INTERNAL_LOC = {"settings", "threshold", "window", "composite", "absence", "anomaly", "fleet", "rule",
                 "slack", "pagerduty", "teams", "webhook", "email", "snmp", "mqtt"}


def _parse_path(text: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.findall(r"[A-Za-z_]\w*|\d+", text))


def format_validation_error(exc: ValidationError, source: str, root: yaml.Node | None) -> str:
    lines = [f"{source}: invalid configuration ({exc.error_count()} error(s))"]
    for err in exc.errors():
        # drop pydantic's internal steps (validator names, union tags, wrapper fields)
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and (p.startswith("function-")
                                                                           or p in _INTERNAL_LOC)))
        message = err["msg"].removeprefix("Value error, ")
        # Cross-field validators name the field inside the model ("devices[0].site: ...");
        # fold it into the location so the path and line point at the field itself.
        relative = _RELATIVE_PATH.match(message)
        if relative:
            # drop union tags ("composite") but keep fields that share a tag's name ("rule")
            loc = loc + tuple(p for p in _parse_path(relative[1]) if p not in _INTERNAL_LOC - {"rule"})
            message = relative[2]
        line = _line_of(root, loc)
        where = f" (line {line})" if line else ""
        lines.append(f"  {_yaml_path(loc)}{where}: {message}")
    return "\n".join(lines)


def load(path: Path, model: type[PulseConfig] = PulseConfig) -> PulseConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    return loads(text, source=str(path), model=model)


def loads(text: str, source: str = "<config>", model: type[PulseConfig] | None = None) -> PulseConfig:
    """Parse and validate; ``model`` is the configuration class (the platform's full
    configuration extends the kernel's with the alerting sections)."""
    model = model or PulseConfig
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: the top level must be a mapping (tenants: ...)")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, source, root)) from None


# ------------------------------------------------------------------ applying


def apply(conn: psycopg.Connection, config: PulseConfig, *, prune: bool = False) -> dict[str, Any]:
    """Apply declaratively in one transaction. New devices get tokens (returned once).
    With ``prune``, sites and devices of the listed tenants that the file omits are deleted."""
    summary: dict[str, Any] = {"tenants": 0, "sites": 0, "devices": 0, "pruned": 0, "tokens": []}
    with conn.transaction():
        for tenant in config.tenants:
            registry.upsert_tenant(conn, tenant.id, tenant.name or tenant.id, tenant.time_zone, tenant.auto_register)
            summary["tenants"] += 1
            for site in tenant.sites:
                loc = site.location
                registry.upsert_site(conn, tenant.id, site.id, site.name or site.id, site.time_zone,
                                     loc.lat if loc else None, loc.lon if loc else None)
                summary["sites"] += 1
            for dev in tenant.devices:
                token = registry.upsert_device(
                    conn,
                    registry.Device(tenant.id, dev.id, dev.site, dev.type, dev.name, dict(dev.tags), dev.status),
                    issue_token=True,
                )
                summary["devices"] += 1
                if token:
                    summary["tokens"].append(token)
            if prune:
                summary["pruned"] += _prune(conn, tenant)
    return summary


def _prune(conn: psycopg.Connection, tenant: TenantConfig) -> int:
    devices = [d.id for d in tenant.devices]
    sites = [s.id for s in tenant.sites]
    removed = conn.execute(
        "delete from devices where tenant_id = %s and not (device_id = any(%s))", (tenant.id, devices)
    ).rowcount
    removed += conn.execute(
        "delete from sites where tenant_id = %s and not (site_id = any(%s))", (tenant.id, sites)
    ).rowcount
    return removed
