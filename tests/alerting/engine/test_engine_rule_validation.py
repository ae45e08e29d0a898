"""Rule validation: clear messages that name the field path; durations; JSON Schema."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from alerting.rules import (
    FleetRule,
    ThresholdRule,
    format_validation_error,
    load_rules,
    parse_duration,
    rules_json_schema,
)

C = {"kind": "threshold", "metric": "temp", "op": ">", "value": 80}  # a condition
T = {**C, "id": "t1"}  # a rule


def comp(rid, mode, conds):
    return {"kind": "composite", "id": rid, "mode": mode, "conditions": conds}


@pytest.mark.parametrize(
    ("rules", "path", "fragment"),
    [
        ([{**T, "op": "=>"}], "rules.0.threshold.op", "Input should be '>'"),
        ([{**T, "for": "-5m"}], "rules.0.threshold.for", "must not be negative"),
        ([{**T, "keep_firing_for": -1}], "rules.0.threshold.keep_firing_for", "must not be negative"),
        ([{**T, "for": "5 parsecs"}], "rules.0.threshold.for", "invalid duration"),
        ([{**T, "severity": "urgent"}], "rules.0.threshold.severity", "'info', 'warning' or 'critical'"),
        ([{**T, "colour": "red"}], "rules.0.threshold.colour", "Extra inputs are not permitted"),
        ([{**T, "clear": 90}], "rules.0.threshold", "clear must be <= value"),
        ([{**T, "op": "==", "clear": 1}], "rules.0.threshold", "not allowed with op '=='"),
        # a rule's own fields are not allowed inside a nested condition
        ([comp("c", "any", [T])], "rules.0.composite.conditions.0.threshold.id", "Extra inputs are not permitted"),
        ([{"kind": "nope", "id": "x"}], "rules.0", "'threshold', 'window', 'composite', 'absence', 'anomaly', 'fleet'"),
        ([comp("c", "all", [])], "rules.0.composite.conditions", "at least 1 item"),
        ([comp("c", "not", [C, C])], "rules.0.composite", "exactly one condition"),
        (
            [{"kind": "window", "id": "w", "metric": "x", "agg": "median", "window": "5m", "op": ">", "value": 1}],
            "rules.0.window.agg",
            "'avg', 'min', 'max', 'count', 'rate' or 'p95'",
        ),
        (
            [{"kind": "window", "id": "w", "metric": "x", "agg": "avg", "window": 0, "op": ">", "value": 1}],
            "rules.0.window.window",
            "greater than 0",
        ),
        ([{"kind": "absence", "id": "a", "duration": "-30s"}], "rules.0.absence.duration", "must not be negative"),
        (
            [{"kind": "fleet", "id": "f", "percent": 150, "condition": {"kind": "absence", "duration": 60}}],
            "rules.0.fleet.percent",
            "less than or equal to 100",
        ),
        (
            [{"kind": "fleet", "id": "f", "percent": 50, "condition": {"kind": "composite", "mode": "any", "conditions": [{"kind": "absence", "duration": "1x"}]}}],
            "rules.0.fleet.condition.composite.conditions.0.absence.duration",
            "invalid duration",
        ),
        ([{**T, "flapping": {"window": 1}}], "rules.0.threshold.flapping.window", "greater than or equal to 2"),
        ([{**T, "flapping": {"threshold": 0.3, "clear_threshold": 0.5}}], "rules.0.threshold.flapping", "clear_threshold must be below"),
        # set-level checks carry their own path
        ([T, {**T}], "rules.1.id", "duplicate rule id 't1'"),
        ([comp("c", "any", [{"kind": "rule", "rule": "missing"}])], "rules.0.composite.conditions.0.rule", "unknown rule 'missing'"),
        (
            [comp("a", "all", [{"kind": "rule", "rule": "b"}]), comp("b", "any", [{"kind": "composite", "mode": "not", "conditions": [{"kind": "rule", "rule": "a"}]}])],
            "rules.0.composite.conditions.0.rule",
            "reference cycle a -> b -> a",
        ),
        ([comp("a", "all", [{"kind": "rule", "rule": "a"}])], "rules.0.composite.conditions.0.rule", "reference cycle a -> a"),
        (
            [{"kind": "fleet", "id": "f", "percent": 5, "condition": C}, comp("c", "all", [{"kind": "rule", "rule": "f"}])],
            "rules.1.composite.conditions.0.rule",
            "is a fleet rule",
        ),
    ],
)
def test_invalid_rules_name_the_field_path(rules, path, fragment):
    with pytest.raises(ValidationError) as info:
        load_rules(rules)
    text = format_validation_error(info.value)
    matching = [line for line in text.splitlines() if line.startswith(path + ":") or line.startswith(path + " ")]
    assert matching, text
    assert any(fragment in line for line in matching), text


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("250ms", 0.25), (90, 90), (1.5, 1.5), ("2d", 172800), ("0", 0)],
)
def test_durations(raw, seconds):
    assert parse_duration(raw) == seconds
    (rule,) = load_rules([{**T, "for": raw, "keep_firing_for": raw}])
    assert rule.for_ == seconds and rule.keep_firing_for == seconds


def test_valid_rule_file_round_trips_through_the_yaml_shape():
    data = {
        "rules": [
            {**T, "for": "5m", "clear": 70, "target": {"tenant": "acme", "site": ["s1"], "tags": {"line": "a"}}},
            {"kind": "fleet", "id": "f", "percent": 30, "condition": {"kind": "rule", "rule": "t1"}, "group_by": "site"},
        ]
    }
    rules = load_rules(data)
    assert isinstance(rules[0], ThresholdRule) and isinstance(rules[1], FleetRule)
    dumped = [r.model_dump(by_alias=True) for r in rules]
    assert dumped[0]["for"] == 300
    assert load_rules(dumped) == rules  # model dumps load back identically
    assert load_rules(rules) == rules


def test_json_schema_documents_kinds_and_durations():
    schema = rules_json_schema()
    defs = schema["$defs"]
    for name in ("ThresholdRule", "WindowRule", "CompositeRule", "AbsenceRule", "AnomalyRule", "FleetRule"):
        assert name in defs
        assert defs[name]["additionalProperties"] is False
    props = defs["ThresholdRule"]["properties"]
    assert "for" in props and "for_" not in props
    assert {"type": "number", "minimum": 0, "description": "seconds"} in props["for"]["anyOf"]
    assert defs["ThresholdRule"]["properties"]["op"]["enum"] == [">", ">=", "<", "<=", "==", "!="]


def test_yaml_rule_file():
    from alerting.rules import load_rules_yaml

    rules = load_rules_yaml(
        """
rules:
  - kind: window
    id: vib-p95
    metric: vibration
    agg: p95
    window: 5m
    op: ">"
    value: 7.5
    for: 2m
    keep_firing_for: 10m
    severity: critical
    target: {tenant: acme, tags: {line: a}}
    flapping: {window: 10, threshold: 0.4}
  - kind: absence
    id: offline
    duration: 15m
"""
    )
    assert [r.id for r in rules] == ["vib-p95", "offline"]
    assert rules[0].window == 300 and rules[0].for_ == 120 and rules[1].duration == 900
    assert load_rules_yaml("") == []
    with pytest.raises(ValidationError) as info:
        load_rules_yaml("rule:\n  - kind: absence\n")
    assert "rule: Extra inputs are not permitted" in format_validation_error(info.value)
