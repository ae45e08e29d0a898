"""Backtest: replay historical readings through the SAME ``Engine`` the live path uses.

Readings are replayed in timestamp order (stable for equal timestamps) on event time:
``advance`` is called at each ``step`` tick (optional) and every ``observe`` first fires
the timers due by its reading's timestamp, then ``advance(end)`` closes the run. Because
timers fire at their own deadline, the result does not depend on ``step`` and equals
what a live engine would have produced for the same readings arriving in order.

Readings outside ``[start, end]`` are skipped (counted in ``skipped``): the engine's clock
starts at ``start`` (that is also when devices that never report start to count as
absent).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alerting.engine import Alert, AlertState, DeviceInfo, Engine, Reading, Transition

__all__ = ["BacktestReport", "RuleStats", "backtest"]

_ALERTING = frozenset({AlertState.FIRING, AlertState.ACKNOWLEDGED, AlertState.FLAPPING})
_NEW_PROBLEM_FROM = frozenset({AlertState.INACTIVE, AlertState.PENDING})


@dataclass
class RuleStats:
    rule_id: str
    shadow: bool = False
    alerts_fired: int = 0  # alerts that reached firing or flapping
    pages: int = 0  # would-page notifications (counted for shadow rules too)
    flaps: int = 0  # entries into flapping
    transitions: int = 0
    time_in_alert: timedelta = timedelta(0)  # firing + acknowledged + flapping, summed over alerts


@dataclass
class BacktestReport:
    start: datetime
    end: datetime
    transitions: list[Transition]
    alerts_fired: int
    flaps: int
    pages: int  # non-shadow rules only: what operators would actually have received
    pages_per_day: float
    time_in_alert: dict[str, timedelta]
    per_rule: dict[str, RuleStats]
    readings: int
    skipped: int
    open_at_end: list[Alert] = field(default_factory=list)


def is_page(t: Transition) -> bool:
    """A new problem reaching an operator: into firing/flapping from nothing or pending."""
    return t.to_state in (AlertState.FIRING, AlertState.FLAPPING) and t.from_state in _NEW_PROBLEM_FROM


def backtest(
    rules: Iterable[Any],
    devices: Iterable[DeviceInfo],
    readings: Iterable[Reading],
    start: datetime,
    end: datetime,
    step: timedelta | None = None,
) -> BacktestReport:
    if end < start:
        raise ValueError("backtest end must not be before start")
    if step is not None and step <= timedelta(0):
        raise ValueError("backtest step must be positive")
    rules = list(rules)
    engine = Engine(rules, devices, clock_start=start)
    ordered = sorted(readings, key=lambda r: r.ts)  # stable: equal timestamps keep input order
    transitions: list[Transition] = []
    tick = start + step if step is not None else None
    used = skipped = 0
    for r in ordered:
        if r.ts < start or r.ts > end:
            skipped += 1
            continue
        while tick is not None and tick <= r.ts:
            transitions.extend(engine.advance(tick))
            tick += step  # type: ignore[operator]
        transitions.extend(engine.observe(r))
        used += 1
    while tick is not None and tick <= end:
        transitions.extend(engine.advance(tick))
        tick += step  # type: ignore[operator]
    transitions.extend(engine.advance(end))
    return _report(engine, transitions, start, end, used, skipped)


def _report(
    engine: Engine, transitions: list[Transition], start: datetime, end: datetime, used: int, skipped: int
) -> BacktestReport:
    per_rule: dict[str, RuleStats] = {r.id: RuleStats(r.id, shadow=r.shadow) for r in engine.rules}
    fired_ids: dict[str, set[str]] = {}
    entered: dict[str, datetime] = {}  # alert_id -> when it entered an alerting state
    for t in transitions:
        st = per_rule.setdefault(t.rule_id, RuleStats(t.rule_id, shadow=t.shadow))
        st.transitions += 1
        if t.to_state in (AlertState.FIRING, AlertState.FLAPPING):
            fired_ids.setdefault(t.rule_id, set()).add(t.alert_id)
        if is_page(t):
            st.pages += 1
        if t.to_state is AlertState.FLAPPING and t.from_state is not AlertState.FLAPPING:
            st.flaps += 1
        was, now = t.from_state in _ALERTING, t.to_state in _ALERTING
        if now and not was:
            entered[t.alert_id] = t.at
        elif was and not now and t.alert_id in entered:
            st.time_in_alert += t.at - entered.pop(t.alert_id)
    open_at_end = engine.alerts()
    for a in open_at_end:
        if a.alert_id in entered:
            per_rule[a.rule_id].time_in_alert += end - entered.pop(a.alert_id)
    for rid, ids in fired_ids.items():
        per_rule[rid].alerts_fired = len(ids)
    days = max((end - start) / timedelta(days=1), 1e-9)
    pages = sum(s.pages for s in per_rule.values() if not s.shadow)
    return BacktestReport(
        start=start,
        end=end,
        transitions=transitions,
        alerts_fired=sum(s.alerts_fired for s in per_rule.values()),
        flaps=sum(s.flaps for s in per_rule.values()),
        pages=pages,
        pages_per_day=pages / days,
        time_in_alert={rid: s.time_in_alert for rid, s in per_rule.items()},
        per_rule=per_rule,
        readings=used,
        skipped=skipped,
        open_at_end=open_at_end,
    )
