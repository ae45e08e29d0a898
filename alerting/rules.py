"""Alert rule models (pydantic v2), as declared in YAML config-as-code.

A *condition* is something evaluated on ONE device (threshold, window, absence, anomaly,
composite, or a reference to another device-level rule's condition). A *rule* is a
condition plus lifecycle settings (severity, ``for``, ``keep_firing_for``, target,
labels, shadow, flapping). The ``fleet`` rule wraps a device-level child condition and
raises one parent alert per device group.

Use :func:`load_rules` (or ``RuleSet.model_validate``) to validate a whole set: only the
set can check unique ids, references and cycles. :func:`format_validation_error` turns a
pydantic ``ValidationError`` into one ``path: message`` line per problem.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "Op",
    "OPS",
    "Severity",
    "Duration",
    "parse_duration",
    "TargetSelector",
    "FlappingSettings",
    "ThresholdCondition",
    "WindowCondition",
    "AbsenceCondition",
    "AnomalyCondition",
    "CompositeCondition",
    "RuleRef",
    "Condition",
    "ThresholdRule",
    "WindowRule",
    "AbsenceRule",
    "AnomalyRule",
    "CompositeRule",
    "FleetRule",
    "Rule",
    "RuleSet",
    "load_rules",
    "load_rules_yaml",
    "format_validation_error",
    "rules_json_schema",
]

# --------------------------------------------------------------------------- durations

_DURATION_RE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}
_COMPOUND_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: Any) -> float:
    """Parse a duration to seconds: "30s", "5m", "1h30m", "250ms", 90, 1.5. Negative → error."""
    if isinstance(value, bool):
        raise PydanticCustomError("duration_type", "duration must be a number of seconds or a string like '30s', '5m', '1h'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        m = _DURATION_RE.match(text)
        if m:
            seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        elif text and _COMPOUND_RE.sub("", text) == "":  # e.g. 1h30m
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _COMPOUND_RE.findall(text))
        elif text.startswith("-"):
            raise PydanticCustomError("duration_negative", "duration must not be negative, got {value}", {"value": repr(value)})
        else:
            raise PydanticCustomError(
                "duration_format",
                "invalid duration {value}: use seconds or a number with unit ms/s/m/h/d/w, e.g. '30s', '5m', '1h'",
                {"value": repr(value)},
            )
    else:
        raise PydanticCustomError("duration_type", "duration must be a number of seconds or a string like '30s', '5m', '1h'")
    if not math.isfinite(seconds):
        raise PydanticCustomError("duration_finite", "duration must be finite")
    if seconds < 0:
        raise PydanticCustomError("duration_negative", "duration must not be negative, got {value}", {"value": repr(value)})
    return seconds


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0, "description": "seconds"},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?(ms|s|m|h|d|w)?)+\s*$", "examples": ["30s", "5m", "1h"]},
    ]
}

Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]
"""Seconds after validation; accepts "30s"/"5m"/"1h"/"1h30m"/"250ms" or a number."""

Op = Literal[">", ">=", "<", "<=", "==", "!="]
OPS: tuple[str, ...] = (">", ">=", "<", "<=", "==", "!=")
Severity = Literal["info", "warning", "critical"]

_STRICT = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True, frozen=True)


# --------------------------------------------------------------------------- common parts


class TargetSelector(BaseModel):
    """Which devices a rule applies to. Every field given must match (AND); omitted = any."""

    model_config = _STRICT

    tenant: str | None = Field(default=None, description="tenant id; omitted = every tenant")
    site: str | list[str] | None = Field(default=None, description="site id or list of site ids")
    tags: dict[str, str] = Field(default_factory=dict, description="device tags that must all be equal")
    devices: list[str] | None = Field(default=None, description="explicit device ids")
    device_type: str | None = None

    def matches(self, tenant_id: str, device_id: str, site_id: str | None, tags: Any, device_type: str | None) -> bool:
        if self.tenant is not None and tenant_id != self.tenant:
            return False
        if self.site is not None:
            sites = [self.site] if isinstance(self.site, str) else self.site
            if site_id not in sites:
                return False
        if self.devices is not None and device_id not in self.devices:
            return False
        if self.device_type is not None and device_type != self.device_type:
            return False
        for k, v in self.tags.items():
            if tags.get(k) != v:
                return False
        return True


class FlappingSettings(BaseModel):
    """Flapping = share of raw state changes over the last ``window`` evaluations.

    Enter when the share is above ``threshold`` (strictly), leave when it drops to
    ``clear_threshold`` or below (default: half of ``threshold``) — two thresholds so an
    alert does not flap in and out of flapping.
    """

    model_config = _STRICT

    window: int = Field(default=10, ge=2, le=1000, description="number of evaluations looked at")
    threshold: float = Field(default=0.5, gt=0, le=1, description="share of evaluations that changed state")
    clear_threshold: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _clear_below_threshold(self) -> FlappingSettings:
        if self.clear_threshold is not None and self.clear_threshold >= self.threshold:
            raise ValueError("clear_threshold must be below threshold")
        return self

    @property
    def effective_clear(self) -> float:
        return self.threshold / 2 if self.clear_threshold is None else self.clear_threshold


# --------------------------------------------------------------------------- conditions


class ThresholdCondition(BaseModel):
    """Latest value of ``metric`` compared with ``value``; optional hysteresis.

    With ``clear``: once breaching, the condition stays breaching until the value no longer
    satisfies ``op`` against ``clear`` (e.g. ``> 80, clear 70`` fires above 80 and clears
    at 70 or below).
    """

    model_config = _STRICT
    kind: Literal["threshold"] = "threshold"
    metric: str = Field(min_length=1)
    op: Op
    value: float
    clear: float | None = Field(default=None, description="hysteresis: value that ends a breach")

    @model_validator(mode="after")
    def _check_clear(self) -> Any:
        if self.clear is None:
            return self
        if self.op in ("==", "!="):
            raise ValueError(f"clear (hysteresis) is not allowed with op {self.op!r}")
        if self.op in (">", ">=") and self.clear > self.value:
            raise ValueError(f"clear must be <= value for op {self.op!r} (it is the lower exit level)")
        if self.op in ("<", "<=") and self.clear < self.value:
            raise ValueError(f"clear must be >= value for op {self.op!r} (it is the upper exit level)")
        return self


class WindowCondition(BaseModel):
    """Aggregate of ``metric`` over the trailing ``window`` (ts in (t - window, t]).

    ``rate`` = (last - first) / (t_last - t_first) in units per second (counter slope);
    ``p95`` uses linear interpolation (numpy's default); ``count`` of an empty window is 0,
    the other aggregates of an empty window are unknown (no evaluation).
    """

    model_config = _STRICT
    kind: Literal["window"] = "window"
    metric: str = Field(min_length=1)
    agg: Literal["avg", "min", "max", "count", "rate", "p95"]
    window: Duration
    op: Op
    value: float

    @field_validator("window")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("window must be greater than 0")
        return v


class AbsenceCondition(BaseModel):
    """No data for ``duration``: for ``metric`` if given, else for any metric of the device.

    Evaluated on a timer (fires with no messages at all); clears when data returns.
    """

    model_config = _STRICT
    kind: Literal["absence"] = "absence"
    metric: str | None = None
    duration: Duration

    @field_validator("duration")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("duration must be greater than 0")
        return v


class AnomalyCondition(BaseModel):
    """Detector score for ``metric`` >= ``threshold``.

    Batch (default): the score arrives as an ordinary metric of a reading, named
    ``score_metric`` (default ``anomaly_score.<metric>``), written by the detector side (the
    hourly scoring asset feeds its scores to the engine through the database).

    Streaming (``streaming: true``): the engine itself runs the registry detector
    ``detector`` (default: the recommended one) with ``params`` on each device's raw
    ``metric``: the first ``warmup`` readings fit it, every later reading is scored with
    ``update(t, value)`` (causal) and that score is compared with ``threshold``.
    """

    model_config = _STRICT
    kind: Literal["anomaly"] = "anomaly"
    metric: str = Field(min_length=1)
    threshold: float = Field(default=0.8, ge=0, le=1)
    detector: str | None = Field(default=None, description="registry name of the detector (streaming: the one run)")
    score_metric: str | None = None
    streaming: bool = Field(default=False, description="run the detector per device in the engine (low latency)")
    params: dict[str, Any] = Field(default_factory=dict, description="streaming: detector parameters")
    warmup: int = Field(default=100, ge=10, le=100_000, description="streaming: readings used to fit the detector")

    @model_validator(mode="after")
    def _check_streaming(self) -> Any:
        if not self.streaming:
            if self.params:
                raise ValueError("params only apply to a streaming anomaly rule (streaming: true)")
            return self
        if self.score_metric is not None:
            raise ValueError("score_metric does not apply to a streaming anomaly rule (the engine computes the score)")
        from detectors import registry

        try:
            registry.validate_params(self.detector or "default", dict(self.params))
        except (registry.UnknownDetectorError, registry.InvalidParamsError) as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def score_key(self) -> str:
        if self.streaming:  # engine-internal: one detector state per (device, detector spec)
            spec = json.dumps([self.detector or "default", self.params, self.warmup], sort_keys=True)
            return f"~stream:{self.metric}:{spec}"
        return self.score_metric or f"anomaly_score.{self.metric}"


class RuleRef(BaseModel):
    """Use another (device-level) rule's condition inside a composite."""

    model_config = _STRICT
    kind: Literal["rule"] = "rule"
    rule: str = Field(min_length=1)


class CompositeCondition(BaseModel):
    """all/any/not over nested conditions of the same device (``not`` takes exactly one)."""

    model_config = _STRICT
    kind: Literal["composite"] = "composite"
    mode: Literal["all", "any", "not"]
    conditions: list[Condition] = Field(min_length=1)

    @model_validator(mode="after")
    def _not_takes_one(self) -> Any:
        if self.mode == "not" and len(self.conditions) != 1:
            raise ValueError(f"mode 'not' takes exactly one condition, got {len(self.conditions)}")
        return self


Condition = Annotated[
    Union[ThresholdCondition, WindowCondition, AbsenceCondition, AnomalyCondition, CompositeCondition, RuleRef],
    Field(discriminator="kind"),
]
CompositeCondition.model_rebuild()


# --------------------------------------------------------------------------- rules


class _RuleBase(BaseModel):
    model_config = _STRICT

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:\-]+$")
    name: str = ""
    severity: Severity = "warning"
    for_: Duration = Field(default=0.0, alias="for", description="condition must hold this long before firing")
    keep_firing_for: Duration = Field(default=0.0, description="keep firing this long after the condition clears")
    resolve_after: Duration | None = Field(
        default=None, description="resolve an open alert when no breaching evaluation was seen for this long (clear-by-time)"
    )
    target: TargetSelector = Field(default_factory=TargetSelector)
    labels: dict[str, str] = Field(default_factory=dict)
    shadow: bool = Field(default=False, description="evaluate and record, never notify")
    flapping: FlappingSettings | None = None

    @field_validator("resolve_after")
    @classmethod
    def _resolve_after_positive(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise ValueError("resolve_after must be greater than 0")
        return v


class ThresholdRule(_RuleBase, ThresholdCondition):
    pass


class WindowRule(_RuleBase, WindowCondition):
    pass


class AbsenceRule(_RuleBase, AbsenceCondition):
    pass


class AnomalyRule(_RuleBase, AnomalyCondition):
    pass


class CompositeRule(_RuleBase, CompositeCondition):
    pass


class FleetRule(_RuleBase):
    """>= ``percent`` % of a device group in breach of ``condition`` → one parent alert.

    The group is every device matched by ``target`` within one tenant (``group_by:
    tenant``) or within one site (``group_by: site``). Groups smaller than
    ``min_devices`` never breach.
    """

    kind: Literal["fleet"] = "fleet"
    condition: Condition
    percent: float = Field(gt=0, le=100)
    group_by: Literal["tenant", "site"] = "tenant"
    min_devices: int = Field(default=1, ge=1)


Rule = Annotated[
    Union[ThresholdRule, WindowRule, CompositeRule, AbsenceRule, AnomalyRule, FleetRule],
    Field(discriminator="kind"),
]
DEVICE_RULE_TYPES = (ThresholdRule, WindowRule, CompositeRule, AbsenceRule, AnomalyRule)


def _refs(cond: Any, path: str) -> list[tuple[str, str]]:
    """(referenced rule id, field path) for every RuleRef inside ``cond``."""
    if isinstance(cond, RuleRef):
        return [(cond.rule, f"{path}.rule")]
    if isinstance(cond, CompositeCondition):
        out: list[tuple[str, str]] = []
        for i, c in enumerate(cond.conditions):
            out.extend(_refs(c, f"{path}.conditions.{i}"))
        return out
    return []


def rule_refs(rule: Any) -> list[tuple[str, str]]:
    """References made by a rule, with paths relative to the rule."""
    if isinstance(rule, FleetRule):
        return _refs(rule.condition, "condition")
    if isinstance(rule, CompositeRule):
        out: list[tuple[str, str]] = []
        for i, c in enumerate(rule.conditions):
            out.extend(_refs(c, f"conditions.{i}"))
        return out
    return []


class RuleSet(BaseModel):
    """A whole rule file: ids unique, references resolvable, no reference cycles."""

    model_config = ConfigDict(extra="forbid")
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_set(self) -> RuleSet:
        errors: list[str] = []
        index: dict[str, int] = {}
        for i, r in enumerate(self.rules):
            if r.id in index:
                errors.append(f"rules.{i}.id: duplicate rule id {r.id!r} (also rules.{index[r.id]}.id)")
            else:
                index[r.id] = i
        graph: dict[str, list[str]] = {}
        for i, r in enumerate(self.rules):
            for ref, path in rule_refs(r):
                where = f"rules.{i}.{r.kind}.{path}"
                if ref not in index:
                    errors.append(f"{where}: unknown rule {ref!r}")
                elif isinstance(self.rules[index[ref]], FleetRule):
                    errors.append(f"{where}: rule {ref!r} is a fleet rule; only device-level rules can be referenced")
                else:
                    graph.setdefault(r.id, []).append(ref)
        cycle = _find_cycle(graph)
        if cycle:
            i = index[cycle[0]]
            r = self.rules[i]
            path = next(p for ref, p in rule_refs(r) if ref == cycle[1])
            errors.append(f"rules.{i}.{r.kind}.{path}: reference cycle {' -> '.join(cycle)}")
        if errors:
            raise ValueError("; ".join(errors))
        return self


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    color: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = 1
        stack.append(n)
        for m in graph.get(n, ()):
            if color.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if color.get(m) is None:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        color[n] = 2
        return None

    for node in sorted(graph):
        if color.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def load_rules(data: Any) -> list[Any]:
    """Validate a rule file (``{"rules": [...]}``, a list of rule dicts, or Rule objects)."""
    if isinstance(data, RuleSet):
        return list(data.rules)
    if isinstance(data, dict):
        payload = data  # a rule file; RuleSet reports a missing/unknown top-level key
    else:
        items = list(data)
        payload = {"rules": [r.model_dump(by_alias=True) if isinstance(r, BaseModel) else r for r in items]}
    return list(RuleSet.model_validate(payload).rules)


def load_rules_yaml(text: str) -> list[Any]:
    """Validate a YAML rule file (``rules:`` list at the top level)."""
    import yaml

    data = yaml.safe_load(text)
    return load_rules({"rules": []} if data is None else data)


def format_validation_error(err: ValidationError) -> str:
    """One ``field.path: message`` line per error (the root-level set errors carry their path)."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "\n".join(lines)


def rules_json_schema() -> dict[str, Any]:
    """JSON Schema of a rule file (for editors and the docs)."""
    return RuleSet.model_json_schema(by_alias=True)
