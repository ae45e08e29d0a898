"""The pure, in-memory alert engine: one code path for the live ingest and for backtests.

Time semantics (the contract the backtest relies on)
-----------------------------------------------------
* The engine runs on *event time*: reading timestamps plus ``advance(now)``. Wall time
  never enters; operator actions carry their own ``at``.
* The engine clock is the largest time seen (reading or ``advance``); it never goes back.
  ``observe(r)`` first advances the clock to ``r.ts``, so timers due at or before ``r.ts``
  fire *before* the reading is evaluated — whether or not the caller advanced first.
* Timers fire at their deadline, and the transition's ``at`` is the deadline, not the
  ``now`` passed to ``advance``. Ties fire in (deadline, timer key) order. Consequently
  ``advance(t1); advance(t2)`` == ``advance(t2)`` and the live loop's sleep granularity
  cannot change the alert sequence: live == backtest for readings that arrive in
  timestamp order (the property test in tests/alerting/engine proves it).
* Late readings: a reading older than its device's last seen timestamp is inserted into
  the window buffers (so later window aggregates are right) but is NOT evaluated and does
  not move last-seen/absence. Transitions therefore never go back in time per device.
* A reading newer than its device's last seen but older than the engine clock (another
  device pushed the clock ahead) is evaluated normally; any transition it causes is
  stamped ``max(reading.ts, last transition of that alert)`` so every alert's history is
  monotone in time.

Lifecycle per fingerprint (tenant, rule, device | group)
----------------------------------------------------------
inactive → pending (when ``for`` > 0) → firing → acknowledged → resolved. A pending alert
whose condition clears resolves without notification. ``keep_firing_for`` delays the
resolve of a firing/acknowledged alert; a re-breach in that time cancels it. A manual
resolve closes the alert; if the condition still breaches, the next breaching
evaluation opens a new alert (an absence rule re-arms its timer from the resolve time).
``flapping``: the share of evaluations that flipped the raw condition over the last N
evaluations; exactly one transition entering, one leaving, none in between.
``resolve_after`` (clear-by-time): an open alert with no breaching evaluation for that
long resolves on a timer (for sources that never send a "good" value, e.g. batch scores).

Evaluation
----------
A reading evaluates the rules targeting its device whose condition mentions one of the
reading's metrics (absence of "any metric" is triggered by every reading); metrics a
composite needs but the reading lacks use their last known value; a condition that
cannot be decided yet (metric never seen, empty window) is skipped, not cleared. Absence
conditions (also inside composites and fleet children) are re-evaluated on a timer at
``last seen + duration``. ``for`` fires on its timer as long as no evaluation contradicted
the breach (silence does not interrupt it; pair with an absence rule for that). Fleet
rules evaluate the child condition per member and the group share after each member
evaluation; the parent alert's ``children`` are the members in breach. A streaming
``anomaly`` condition keeps one registry detector per device (fitted on its first
``warmup`` readings, then ``update(t, value)`` per reading, before the rules are evaluated);
batch ``anomaly`` conditions read the score metric written by the scoring asset.

Deployment notes
----------------
* A live loop should ``advance(wall_now - grace)`` (grace ≈ ingest latency) and sleep
  until ``next_deadline()``; then in-flight readings are not behind the clock.
* A reading far in the future pushes the clock (and fires other devices' timers):
  ingest should quarantine timestamps too far ahead of wall time.
* Fleet rules need every member of a group in the same engine: partition by tenant.
* Devices not in the inventory are watched from their first reading (no site/tags).
"""

from __future__ import annotations

import json
import math
import operator
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from alerting.rules import (
    AbsenceCondition,
    AbsenceRule,
    AnomalyCondition,
    AnomalyRule,
    CompositeCondition,
    CompositeRule,
    FleetRule,
    RuleRef,
    ThresholdCondition,
    ThresholdRule,
    WindowCondition,
    WindowRule,
    load_rules,
)
from alerting.timers import TimerWheel
from alerting.windows import Buffer, aggregate

__all__ = [
    "Alert",
    "AlertState",
    "DeviceInfo",
    "Engine",
    "Fingerprint",
    "Reading",
    "Transition",
    "from_us",
    "to_us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
SNAPSHOT_VERSION = 1


def to_us(ts: datetime) -> int:
    """Exact integer microseconds since the epoch (floats would drift in round trips)."""
    if ts.tzinfo is None:
        raise ValueError(f"timestamp must be timezone-aware (UTC), got naive {ts!r}")
    return (ts - _EPOCH) // _US


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _sec_to_us(seconds: float) -> int:
    return int(round(seconds * 1_000_000))


# =========================================================================== public types


@dataclass(frozen=True, slots=True)
class Reading:
    tenant_id: str
    device_id: str
    ts: datetime
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class DeviceInfo:
    tenant_id: str
    device_id: str
    site_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    device_type: str | None = None


class AlertState(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    FLAPPING = "flapping"
    RESOLVED = "resolved"


OPEN_STATES = frozenset({AlertState.PENDING, AlertState.FIRING, AlertState.ACKNOWLEDGED, AlertState.FLAPPING})


@dataclass(frozen=True, slots=True, order=True)
class Fingerprint:
    """Identity of an alert: (tenant, rule, subject); subject = device id or ``group:<key>``."""

    tenant_id: str
    rule_id: str
    subject: str

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.rule_id}/{self.subject}"

    @classmethod
    def parse(cls, text: str) -> Fingerprint:
        tenant, rule, subject = text.split("/", 2)
        return cls(tenant, rule, subject)


@dataclass(frozen=True)
class Transition:
    """One alert state change = one ``alert_events`` row (and maybe one notification)."""

    fingerprint: Fingerprint
    rule_id: str
    tenant_id: str
    device_id: str | None
    from_state: AlertState
    to_state: AlertState
    at: datetime
    value: float | None
    reason: str
    labels: Mapping[str, str]
    severity: str
    shadow: bool
    children: tuple[str, ...] = ()
    group: str | None = None
    alert_id: str = ""
    count: int = 0
    notify: bool = False  # deliver to channels; always False for shadow rules


@dataclass(frozen=True)
class Alert:
    """Read-only view of an open alert (see ``Engine.alerts``)."""

    alert_id: str
    fingerprint: Fingerprint
    rule_id: str
    tenant_id: str
    device_id: str | None
    group: str | None
    state: AlertState
    severity: str
    labels: Mapping[str, str]
    shadow: bool
    started_at: datetime
    fired_at: datetime | None
    acknowledged_at: datetime | None
    last_seen: datetime
    count: int
    value: float | None
    children: tuple[str, ...]


# =========================================================================== conditions

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_ANY = None  # trigger marker: any metric


class _Dev:
    """Per-device runtime state."""

    __slots__ = ("key", "info", "last_seen", "armed", "last_values", "buffers", "retention", "rules", "groups", "series",
                 "streams", "stream_specs")

    def __init__(self, info: DeviceInfo) -> None:
        self.key = (info.tenant_id, info.device_id)
        self.info = info
        self.last_seen: int | None = None
        self.armed: int | None = None  # when the engine started watching (absence base before any data)
        self.last_values: dict[str, tuple[int, float]] = {}
        self.buffers: dict[str, Buffer] = {}
        self.retention: dict[str, int] = {}
        self.rules: list[_CRule] = []
        self.groups: dict[str, _Group] = {}  # fleet rule id -> its group for this device
        self.series: dict[str, _Series] = {}  # rule id -> series (view of Engine._series)
        self.streams: dict[str, _Stream] = {}  # streaming detector state by score key
        self.stream_specs: dict[str, dict[str, AnomalyCondition]] = {}  # raw metric -> score key -> condition


class _Stream:
    """One streaming detector on one device's metric: fitted on the first ``warmup`` finite
    readings, then ``update(t, value)`` per reading (causal). Not in snapshots: after a
    restore the detector warms up again (its last score survives in ``last_values``)."""

    __slots__ = ("cond", "warm", "det")

    def __init__(self, cond: AnomalyCondition) -> None:
        self.cond = cond
        self.warm: list[float] = []
        self.det: Any = None

    def update(self, t: int, value: float) -> float | None:
        if self.det is None:
            self.warm.append(value)
            if len(self.warm) >= self.cond.warmup:
                import numpy as np

                from detectors import registry

                det = registry.create(self.cond.detector or "default", **self.cond.params)
                self.det = det.fit(np.asarray(self.warm, dtype=float))
                self.warm = []
            return None  # warming up: the condition is undecided
        return float(self.det.update(from_us(t), value))


class _Node:
    path: str

    def eval(self, dev: _Dev, ns: dict[str, bool], t: int, floor: int | None) -> tuple[bool | None, float | None]:
        raise NotImplementedError

    def recheck(self, dev: _Dev, after: int, floor: int | None) -> int | None:
        return None


class _Thr(_Node):
    __slots__ = ("path", "metric", "op", "value", "clear", "desc")

    def __init__(self, path: str, metric: str, op: str, value: float, clear: float | None) -> None:
        self.path, self.metric, self.op, self.value, self.clear = path, metric, _OPS[op], value, clear
        self.desc = f"{metric} {op} {value:g}"

    def eval(self, dev, ns, t, floor):
        lv = dev.last_values.get(self.metric)
        if lv is None:
            return None, None
        v = lv[1]
        if self.clear is None:
            return self.op(v, self.value), v
        # hysteresis: while breaching, compare against the clear level instead
        res = self.op(v, self.clear if ns.get(self.path) else self.value)
        ns[self.path] = res
        return res, v


class _Win(_Node):
    __slots__ = ("path", "metric", "agg", "width", "op", "value", "desc")

    def __init__(self, path: str, c: WindowCondition) -> None:
        self.path, self.metric, self.agg, self.op, self.value = path, c.metric, c.agg, _OPS[c.op], c.value
        self.width = _sec_to_us(c.window)
        self.desc = f"{c.agg}({c.metric}, {c.window:g}s) {c.op} {c.value:g}"

    def eval(self, dev, ns, t, floor):
        buf = dev.buffers.get(self.metric)
        if buf is None:
            v = aggregate(self.agg, [], [])
        else:
            ts, vals = buf.slice(t, self.width)
            v = aggregate(self.agg, ts, vals)
        if v is None:
            return None, None
        return self.op(v, self.value), v


class _Abs(_Node):
    __slots__ = ("path", "metric", "dur", "desc")

    def __init__(self, path: str, metric: str | None, duration: float) -> None:
        self.path, self.metric, self.dur = path, metric, _sec_to_us(duration)
        self.desc = f"no data for {metric or 'any metric'} in {duration:g}s"

    def _base(self, dev: _Dev, floor: int | None) -> int | None:
        if self.metric is None:
            base = dev.last_seen
        else:
            lv = dev.last_values.get(self.metric)
            base = None if lv is None else lv[0]
        if base is None:
            base = dev.armed
        if base is None:
            return None
        return base if floor is None or floor < base else floor

    def eval(self, dev, ns, t, floor):
        base = self._base(dev, floor)
        if base is None:
            return None, None
        age = t - base
        return age >= self.dur, age / 1_000_000

    def recheck(self, dev, after, floor):
        base = self._base(dev, floor)
        if base is None:
            return None
        due = base + self.dur
        return due if due > after else None


class _Anom(_Node):
    __slots__ = ("path", "key", "threshold", "desc")

    def __init__(self, path: str, c: AnomalyCondition) -> None:
        self.path, self.key, self.threshold = path, c.score_key, c.threshold
        self.desc = f"{self.key} >= {c.threshold:g}"

    def eval(self, dev, ns, t, floor):
        lv = dev.last_values.get(self.key)
        if lv is None:
            return None, None
        return lv[1] >= self.threshold, lv[1]


class _Comp(_Node):
    __slots__ = ("path", "mode", "children", "desc")

    def __init__(self, path: str, mode: str, children: list[_Node]) -> None:
        self.path, self.mode, self.children = path, mode, children
        self.desc = f"{mode}(" + ", ".join(c.desc for c in children) + ")"  # type: ignore[attr-defined]

    def eval(self, dev, ns, t, floor):
        # evaluate every child (no short-circuit) so each child's hysteresis state stays current
        results = [c.eval(dev, ns, t, floor) for c in self.children]
        value = next((v for _, v in results if v is not None), None)
        rs = [r for r, _ in results]
        if self.mode == "not":
            return (None if rs[0] is None else not rs[0]), value
        if self.mode == "all":
            if False in rs:
                return False, value
            return (None if None in rs else True), value
        if True in rs:
            return True, value
        return (None if None in rs else False), value

    def recheck(self, dev, after, floor):
        due = [d for c in self.children if (d := c.recheck(dev, after, floor)) is not None]
        return min(due) if due else None


_COND_OF_RULE = {
    ThresholdRule: ThresholdCondition,
    WindowRule: WindowCondition,
    AbsenceRule: AbsenceCondition,
    AnomalyRule: AnomalyCondition,
    CompositeRule: CompositeCondition,
}


def _condition_of(rule: Any) -> Any:
    cls = _COND_OF_RULE[type(rule)]
    return cls.model_construct(**{f: getattr(rule, f) for f in cls.model_fields})


def _inline(cond: Any, by_id: dict[str, Any]) -> Any:
    """Replace rule references by the referenced condition (RuleSet validation forbids cycles)."""
    if isinstance(cond, RuleRef):
        return _inline(_condition_of(by_id[cond.rule]), by_id)
    if isinstance(cond, CompositeCondition):
        return CompositeCondition.model_construct(
            kind="composite", mode=cond.mode, conditions=[_inline(c, by_id) for c in cond.conditions]
        )
    return cond


def _build(cond: Any, path: str, acc: dict[str, Any]) -> _Node:
    """Condition model → evaluation node; collects trigger metrics, windows and absence."""
    if isinstance(cond, ThresholdCondition):
        acc["metrics"].add(cond.metric)
        return _Thr(path, cond.metric, cond.op, cond.value, cond.clear)
    if isinstance(cond, WindowCondition):
        acc["metrics"].add(cond.metric)
        w = _sec_to_us(cond.window)
        acc["windows"][cond.metric] = max(w, acc["windows"].get(cond.metric, 0))
        return _Win(path, cond)
    if isinstance(cond, AbsenceCondition):
        acc["absence"] = True
        if cond.metric is None:
            acc["any"] = True
        else:
            acc["metrics"].add(cond.metric)
        return _Abs(path, cond.metric, cond.duration)
    if isinstance(cond, AnomalyCondition):
        if cond.streaming:
            acc["metrics"].add(cond.metric)  # the raw metric triggers; the engine computes the score
            acc["streams"].setdefault(cond.metric, {})[cond.score_key] = cond
        else:
            acc["metrics"].add(cond.score_key)
        return _Anom(path, cond)
    if isinstance(cond, CompositeCondition):
        kids = [_build(c, f"{path}.{i}", acc) for i, c in enumerate(cond.conditions)]
        return _Comp(path, cond.mode, kids)
    raise TypeError(f"unsupported condition {cond!r}")


class _CRule:
    """A validated rule compiled for evaluation."""

    __slots__ = (
        "rule", "id", "fleet", "node", "triggers", "absence", "windows", "sig",
        "for_us", "kff_us", "resolve_us", "flap_n", "flap_thr", "flap_clear", "streams",
    )

    def __init__(self, rule: Any, by_id: dict[str, Any]) -> None:
        self.rule = rule
        self.id: str = rule.id
        self.fleet = isinstance(rule, FleetRule)
        cond = _inline(rule.condition if self.fleet else _condition_of(rule), by_id)
        acc: dict[str, Any] = {"metrics": set(), "windows": {}, "absence": False, "any": False, "streams": {}}
        self.node = _build(cond, "c", acc)
        self.streams: dict[str, dict[str, AnomalyCondition]] = acc["streams"]
        self.triggers: frozenset[str] | None = _ANY if acc["any"] else frozenset(acc["metrics"])
        self.absence: bool = acc["absence"]
        self.windows: dict[str, int] = acc["windows"]
        # the condition's identity: hysteresis state only survives an edit that keeps it
        self.sig = json.dumps([self.fleet, cond.model_dump(mode="json")], sort_keys=True)
        self.for_us = _sec_to_us(rule.for_)
        self.kff_us = _sec_to_us(rule.keep_firing_for)
        self.resolve_us = None if rule.resolve_after is None else _sec_to_us(rule.resolve_after)
        f = rule.flapping
        self.flap_n = f.window if f else 0
        self.flap_thr = f.threshold if f else 1.0
        self.flap_clear = f.effective_clear if f else 0.0

    @property
    def desc(self) -> str:
        return self.node.desc  # type: ignore[attr-defined]

    def group_key(self, info: DeviceInfo) -> str:
        if self.rule.group_by == "site":
            return f"site:{info.site_id or '-'}"
        return "tenant"


# =========================================================================== runtime state


class _AlertRec:
    __slots__ = ("alert_id", "state", "started", "fired", "acked", "count", "last_seen", "value", "children")

    def __init__(self, alert_id: str, state: AlertState, at: int, value: float | None, children: tuple[str, ...]):
        self.alert_id = alert_id
        self.state = state
        self.started = at
        self.fired: int | None = at if state is AlertState.FIRING else None
        self.acked: int | None = None
        self.count = 1
        self.last_seen = at
        self.value = value
        self.children = children


class _Series:
    """Evaluation state of one rule on one device (or one fleet group)."""

    __slots__ = (
        "rule", "tenant_id", "device_id", "group", "child", "labels", "active", "node_state", "flips", "value",
        "last_eval", "last_breach", "last_change", "cleared_at", "n_alerts", "floor", "alert", "sig",
        "fingerprint", "tkeys", "timers",
    )

    def __init__(self, rule: _CRule, tenant_id: str, device_id: str | None, group: str | None, child: bool):
        self.rule = rule
        self.tenant_id = tenant_id
        self.device_id = device_id
        self.group = group
        self.child = child  # fleet member: evaluated, never owns an alert
        self.labels: dict[str, str] = {}
        self.active = False
        self.node_state: dict[str, bool] = {}
        self.flips: deque[int] | None = deque(maxlen=rule.flap_n) if rule.flap_n else None
        self.value: float | None = None
        self.last_eval: int | None = None
        self.last_breach: int | None = None
        self.last_change: int = -(2**62)
        self.cleared_at: int | None = None
        self.n_alerts = 0
        self.floor: int | None = None  # absence base floor after a manual resolve
        self.alert: _AlertRec | None = None
        self.sig = rule.sig
        subject = device_id if group is None else f"group:{group}"
        self.fingerprint = Fingerprint(tenant_id, rule.id, subject)  # type: ignore[arg-type]
        sk = "d" if group is None else "g"
        # timer keys by index (_T_FOR, _T_KFF, _T_STALE, _T_EVAL) and the deadline armed for
        # each, so an evaluation that changes nothing does not touch the heap
        self.tkeys = tuple((kind, rule.id, tenant_id, sk, subject) for kind in _TIMER_KINDS)
        self.timers: list[int | None] = [None, None, None, None]

    @property
    def subject(self) -> str:
        return self.fingerprint.subject


_TIMER_KINDS = ("for", "kff", "stale", "eval")
_T_FOR, _T_KFF, _T_STALE, _T_EVAL = range(4)
_T_INDEX = {k: i for i, k in enumerate(_TIMER_KINDS)}


class _Group:
    __slots__ = ("members", "breaching", "series")

    def __init__(self, series: _Series) -> None:
        self.members: set[str] = set()
        self.breaching: set[str] = set()
        self.series = series


_REASON_RESOLVE_HAND = "resolved by hand"


# =========================================================================== engine


class Engine:
    """In-memory rule evaluation + alert lifecycle. Not thread-safe: one engine per worker."""

    def __init__(self, rules: Iterable[Any], devices: Iterable[DeviceInfo], *, clock_start: datetime | None = None):
        self._wheel: TimerWheel[tuple[str, str, str, str, str]] = TimerWheel()
        self._clock: int | None = None if clock_start is None else to_us(clock_start)
        self._devices: dict[tuple[str, str], _Dev] = {}
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._groups: dict[tuple[str, str, str], _Group] = {}
        self._crules: list[_CRule] = []
        self._rule_models: list[Any] = []
        #: transitions produced by ``restore`` when the given rules differ from the snapshot's
        self.restore_transitions: list[Transition] = []
        self._rebuild(rules, list(devices))

    # ------------------------------------------------------------------ public API
    @property
    def clock(self) -> datetime | None:
        return None if self._clock is None else from_us(self._clock)

    @property
    def rules(self) -> list[Any]:
        return list(self._rule_models)

    def observe(self, reading: Reading) -> list[Transition]:
        """Evaluate every rule targeting the reading's device (after firing timers due by its ts)."""
        t = to_us(reading.ts)
        out: list[Transition] = []
        self._advance_to(t, out)
        dev = self._devices.get((reading.tenant_id, reading.device_id))
        if dev is None:
            dev = self._add_unknown_device(reading.tenant_id, reading.device_id)
        metrics: dict[str, float] = {}
        for name, raw in reading.metrics.items():
            v = float(raw)
            if math.isfinite(v):  # ingest validates; this only keeps NaN out of aggregates
                metrics[name] = v
        for name, v in metrics.items():
            keep = dev.retention.get(name)
            if keep is not None:
                buf = dev.buffers.get(name)
                if buf is None:
                    buf = dev.buffers[name] = Buffer()
                buf.add(t, v)
                buf.trim(max(t, buf.ts[-1]) - keep)
        if dev.last_seen is not None and t < dev.last_seen:
            return out  # late: windows updated above, no evaluation (see module doc)
        dev.last_seen = t
        for name, v in metrics.items():
            dev.last_values[name] = (t, v)
            for key, cond in dev.stream_specs.get(name, {}).items():
                st = dev.streams.get(key)
                if st is None:
                    st = dev.streams[key] = _Stream(cond)
                score = st.update(t, v)
                if score is not None:
                    dev.last_values[key] = (t, score)
        names = metrics.keys()
        for cr in dev.rules:
            if cr.triggers is not None and cr.triggers.isdisjoint(names):
                continue
            self._evaluate(cr, dev, t, out)
        return out

    def rebuild_windows(self, readings: Iterable[Reading]) -> None:
        """Refill window buffers from stored readings (after ``restore`` of a snapshot taken
        with ``include_windows=False``). Nothing is evaluated and no state moves; readings
        newer than the device's last seen are ignored (feed those through ``observe``), and
        points already in a buffer (same timestamp and value) are not added twice."""
        for r in readings:
            dev = self._devices.get((r.tenant_id, r.device_id))
            if dev is None or not dev.retention:
                continue
            t = to_us(r.ts)
            if dev.last_seen is None or t > dev.last_seen:
                continue
            for name, raw in r.metrics.items():
                keep = dev.retention.get(name)
                v = float(raw)
                if keep is None or not math.isfinite(v):
                    continue
                buf = dev.buffers.get(name)
                if buf is None:
                    buf = dev.buffers[name] = Buffer()
                elif buf.contains(t, v):
                    continue  # already there (snapshot had windows, or fed twice)
                buf.add(t, v)
                buf.trim(buf.ts[-1] - keep)

    def advance(self, now: datetime) -> list[Transition]:
        """Fire every timer due at or before ``now`` (each at its own deadline)."""
        out: list[Transition] = []
        self._advance_to(to_us(now), out)
        return out

    def last_seen(self, tenant_id: str, device_id: str) -> datetime | None:
        """Newest reading time of a device (readings older than it are late, not evaluated)."""
        dev = self._devices.get((tenant_id, device_id))
        return None if dev is None or dev.last_seen is None else from_us(dev.last_seen)

    def next_deadline(self) -> datetime | None:
        d = self._wheel.next_deadline()
        return None if d is None else from_us(d)

    def alerts(self) -> list[Alert]:
        """Open alerts (pending, firing, acknowledged, flapping), sorted by fingerprint."""
        res = []
        for s in self._all_series():
            if s.alert is not None:
                res.append(self._alert_view(s))
        res.sort(key=lambda a: a.fingerprint)
        return res

    def alert(self, fingerprint: Fingerprint | str) -> Alert | None:
        s = self._lookup(fingerprint)
        return None if s is None or s.alert is None else self._alert_view(s)

    def acknowledge(self, fingerprint: Fingerprint | str, at: datetime) -> list[Transition]:
        """firing → acknowledged (flapping: ack recorded, state kept). Otherwise a no-op."""
        s = self._lookup(fingerprint)
        out: list[Transition] = []
        if s is None or s.alert is None or s.alert.acked is not None:
            return out
        a = s.alert
        at_us = max(to_us(at), s.last_change)
        if a.state is AlertState.FIRING:
            a.acked = at_us
            self._emit(s, AlertState.FIRING, AlertState.ACKNOWLEDGED, at_us, "acknowledged", out)
            a.state = AlertState.ACKNOWLEDGED
        elif a.state is AlertState.FLAPPING:
            a.acked = at_us
            self._emit(s, AlertState.FLAPPING, AlertState.FLAPPING, at_us, "acknowledged while flapping", out)
        return out

    def resolve(self, fingerprint: Fingerprint | str, at: datetime, by_hand: bool = True) -> list[Transition]:
        """Close the open alert. A still-breaching condition opens a new alert on its next
        breaching evaluation; an absence rule re-arms from ``at``."""
        s = self._lookup(fingerprint)
        out: list[Transition] = []
        if s is None or s.alert is None:
            return out
        at_us = max(to_us(at), s.last_change)
        self._close(s, at_us, _REASON_RESOLVE_HAND if by_hand else "resolved externally", out)
        if s.rule.absence and s.group is None:
            s.floor = at_us
            s.last_eval = at_us
            self._arm_eval(s, self._devices.get((s.tenant_id, s.device_id)))  # type: ignore[arg-type]
        return out

    def update_rules(self, rules: Iterable[Any]) -> list[Transition]:
        """Swap the rule set. Alerts of rules that still exist (same id, device still
        targeted) keep their state; alerts of removed rules / untargeted devices resolve."""
        return self._rebuild(rules, [d.info for d in self._devices.values()])

    def update_devices(self, devices: Iterable[DeviceInfo]) -> list[Transition]:
        """Replace the device inventory (new devices start being watched now; alerts of
        removed devices resolve)."""
        return self._rebuild(self._rule_models, list(devices))

    # ------------------------------------------------------------------ snapshot
    def snapshot(self, *, include_windows: bool = True) -> dict[str, Any]:
        """JSON-serialisable state. Timers are not stored: they are derived from state."""
        devs = []
        for dev in sorted(self._devices.values(), key=lambda d: d.key):
            d: dict[str, Any] = {
                "tenant_id": dev.key[0],
                "device_id": dev.key[1],
                "last_seen": dev.last_seen,
                "armed": dev.armed,
                "last_values": {m: [ts, v] for m, (ts, v) in dev.last_values.items()},
            }
            if include_windows:
                d["windows"] = {m: [b.ts, b.vals] for m, b in dev.buffers.items() if len(b)}
            devs.append(d)
        series = [self._dump_series(s) for s in self._series.values()]
        groups = [
            {"rule_id": k[0], "tenant_id": k[1], "group": k[2], "breaching": sorted(g.breaching),
             "series": self._dump_series(g.series)}
            for k, g in self._groups.items()
        ]
        return {"version": SNAPSHOT_VERSION, "clock": self._clock, "devices": devs, "series": series, "groups": groups}

    @classmethod
    def restore(cls, snapshot: Mapping[str, Any], rules: Iterable[Any], devices: Iterable[DeviceInfo]) -> Engine:
        """Rebuild an engine from ``snapshot`` with the current rules/devices.

        State of alerts whose rule and device still exist is kept (like ``update_rules``);
        the transitions resolving the others are in ``engine.restore_transitions``.
        """
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported engine snapshot version {snapshot.get('version')!r}")
        eng = cls.__new__(cls)
        eng._wheel = TimerWheel()
        eng._clock = snapshot["clock"]
        eng._devices = {}
        eng._series = {}
        eng._groups = {}
        eng._crules = []
        eng._rule_models = []
        infos = {(d.tenant_id, d.device_id): d for d in devices}
        for d in snapshot["devices"]:
            key = (d["tenant_id"], d["device_id"])
            dev = _Dev(infos.get(key) or DeviceInfo(*key))
            dev.last_seen = d["last_seen"]
            dev.armed = d["armed"]
            dev.last_values = {m: (int(ts), float(v)) for m, (ts, v) in d["last_values"].items()}
            for m, (ts, vals) in d.get("windows", {}).items():
                b = Buffer()
                b.ts, b.vals = [int(x) for x in ts], [float(x) for x in vals]
                dev.buffers[m] = b
            eng._devices[key] = dev
        # placeholder rules: _rebuild decides, per series, whether the rule still exists
        for sd in snapshot["series"]:
            s = eng._load_series(sd, None)
            eng._series[(sd["rule_id"], sd["tenant_id"], sd["device_id"])] = s
        for gd in snapshot["groups"]:
            s = eng._load_series(gd["series"], gd["group"])
            g = _Group(s)
            g.breaching = set(gd["breaching"])
            eng._groups[(gd["rule_id"], gd["tenant_id"], gd["group"])] = g
        # devices only known from the snapshot (seen via observe) stay; update_devices drops them
        known = list(infos.values()) + [dev.info for k, dev in eng._devices.items() if k not in infos]
        eng.restore_transitions = eng._rebuild(rules, known)
        return eng

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, cr: _CRule, dev: _Dev, t: int, out: list[Transition]) -> None:
        s = dev.series.get(cr.id)
        if s is None:
            s = self._new_series(cr, dev)
        res, value = cr.node.eval(dev, s.node_state, t, s.floor)
        if cr.absence:
            s.last_eval = t
            self._arm_eval(s, dev)
        if res is None:
            return
        if not cr.fleet:
            self._apply(s, res, value, t, out)
            return
        # fleet member: record the child's raw state, then evaluate the group
        s.active, s.value, s.last_eval = res, value, t
        g = dev.groups[cr.id]
        if res:
            g.breaching.add(dev.key[1])
        else:
            g.breaching.discard(dev.key[1])
        self._eval_group(g, t, out)

    def _eval_group(self, g: _Group, t: int, out: list[Transition]) -> None:
        n = len(g.members)
        k = len(g.breaching)
        share = 100.0 * k / n if n else 0.0
        breach = n >= g.series.rule.rule.min_devices and share >= g.series.rule.rule.percent
        self._apply(g.series, breach, share, t, out, tuple(sorted(g.breaching)))

    def _apply(
        self, s: _Series, breach: bool, value: float | None, t: int, out: list[Transition], children: tuple[str, ...] = ()
    ) -> None:
        """One evaluation result → lifecycle. ``at`` is clamped so an alert never goes back in time."""
        cr = s.rule
        at = t if t > s.last_change else s.last_change
        flipped = breach != s.active
        s.active, s.value, s.last_eval = breach, value, t
        if breach:
            s.last_breach = t
        share = None
        if s.flips is not None:
            s.flips.append(1 if flipped else 0)
            if len(s.flips) == s.flips.maxlen:
                share = sum(s.flips) / len(s.flips)
        a = s.alert
        if a is not None:
            a.value = value
            a.children = children
            if breach:
                a.count += 1
                a.last_seen = at
        if a is not None and a.state is AlertState.FLAPPING:
            if share is not None and share <= cr.flap_clear:
                self._leave_flapping(s, at, "flapping ended", out)
            self._arm(s)
            return
        if share is not None and share > cr.flap_thr and (a is not None or breach):
            reason = f"flapping: {share:.0%} of the last {len(s.flips)} evaluations changed state"  # type: ignore[arg-type]
            if a is None:
                self._open(s, AlertState.FLAPPING, at, value, children, reason, out)
            else:
                self._emit(s, a.state, AlertState.FLAPPING, at, reason, out)
                a.state = AlertState.FLAPPING
            s.cleared_at = None
            self._arm(s)
            return
        if breach:
            if a is None:
                state = AlertState.PENDING if cr.for_us > 0 else AlertState.FIRING
                if s.group is None:
                    reason = f"{cr.desc} (value {_fmt(value)})"
                else:
                    reason = f"{len(children)} device(s), {_fmt(value)}% of the group, breach {cr.desc}"
                self._open(s, state, at, value, children, reason, out)
            else:
                s.cleared_at = None  # a re-breach cancels keep_firing_for
        elif a is not None:
            if a.state is AlertState.PENDING:
                self._close(s, at, f"condition cleared before 'for' elapsed (value {_fmt(value)})", out)
            elif cr.kff_us > 0:
                if s.cleared_at is None:
                    s.cleared_at = at
            else:
                self._close(s, at, f"condition cleared (value {_fmt(value)})", out)
        self._arm(s)

    # ------------------------------------------------------------------ timers
    def _advance_to(self, now: int, out: list[Transition]) -> None:
        if self._clock is None:
            self._clock = now
            self._arm_devices()
        wheel = self._wheel
        while (item := wheel.pop_due(now)) is not None:
            deadline, key = item
            if deadline > self._clock:
                self._clock = deadline
            self._fire(deadline, key, out)
        if now > self._clock:
            self._clock = now

    def _fire(self, deadline: int, key: tuple[str, str, str, str, str], out: list[Transition]) -> None:
        kind, rid, tenant, sk, subject = key
        if sk == "d":
            s = self._series.get((rid, tenant, subject))
        else:
            g = self._groups.get((rid, tenant, subject.removeprefix("group:")))
            s = None if g is None else g.series
        if s is None:
            return
        s.timers[_T_INDEX[kind]] = None  # popped from the wheel
        if kind == "eval":
            dev = self._devices[(tenant, subject)]
            self._evaluate(s.rule, dev, deadline, out)
            return
        a = s.alert
        if a is None:
            return
        at = deadline if deadline > s.last_change else s.last_change
        # each branch changes the state the timer was derived from, so _arm cannot re-arm
        # the same due timer (which would loop in _advance_to)
        if kind == "for":
            if a.state is AlertState.PENDING:
                if s.active:
                    self._emit(s, AlertState.PENDING, AlertState.FIRING, at, f"held for {s.rule.for_us / 1e6:g}s", out)
                    a.state = AlertState.FIRING
                    a.fired = at
                else:
                    self._close(s, at, "condition not holding when 'for' elapsed", out)
        elif kind == "kff":
            if a.state in (AlertState.FIRING, AlertState.ACKNOWLEDGED) and not s.active:
                self._close(s, at, "condition clear for keep_firing_for", out)
            else:
                s.cleared_at = None
        elif kind == "stale":
            self._close(s, at, "no breaching evaluation for resolve_after", out)
        self._arm(s)

    def _set_timer(self, s: _Series, i: int, deadline: int | None) -> None:
        if s.timers[i] != deadline:
            if deadline is None:
                self._wheel.cancel(s.tkeys[i])
            else:
                self._wheel.schedule(s.tkeys[i], deadline)
            s.timers[i] = deadline

    def _arm(self, s: _Series) -> None:
        """Derive the lifecycle timers of a series from its state (also used after restore)."""
        cr, a = s.rule, s.alert
        if a is None:
            if s.timers[_T_FOR] is not None or s.timers[_T_KFF] is not None or s.timers[_T_STALE] is not None:
                for i in (_T_FOR, _T_KFF, _T_STALE):
                    self._set_timer(s, i, None)
            return
        state = a.state
        self._set_timer(s, _T_FOR, a.started + cr.for_us if state is AlertState.PENDING else None)
        kff = None
        if s.cleared_at is not None and (state is AlertState.FIRING or state is AlertState.ACKNOWLEDGED):
            kff = s.cleared_at + cr.kff_us
        self._set_timer(s, _T_KFF, kff)
        stale = None
        if cr.resolve_us is not None:
            stale = max(s.last_breach or a.started, a.started) + cr.resolve_us
        self._set_timer(s, _T_STALE, stale)

    def _arm_eval(self, s: _Series, dev: _Dev | None) -> None:
        """Schedule the time-based re-evaluation of absence conditions."""
        due = None
        if dev is not None:
            after = s.last_eval if s.last_eval is not None else -(2**62)
            due = s.rule.node.recheck(dev, after, s.floor)
        self._set_timer(s, _T_EVAL, due)

    def _arm_devices(self) -> None:
        """First clock value known: devices start being watched now (absence base)."""
        for dev in self._devices.values():
            if dev.armed is None:
                dev.armed = self._clock
        for s in self._series.values():
            if s.rule.absence:
                self._arm_eval(s, self._devices.get((s.tenant_id, s.device_id)))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ lifecycle helpers
    def _open(
        self, s: _Series, state: AlertState, at: int, value: float | None, children: tuple[str, ...], reason: str,
        out: list[Transition],
    ) -> None:
        s.n_alerts += 1
        # deterministic (a replay regenerates the same id, so the DB write can be idempotent)
        # and unique even if the counter restarts after a lost snapshot (opening time in µs)
        s.alert = _AlertRec(f"{s.fingerprint}@{at}#{s.n_alerts}", state, at, value, children)
        s.cleared_at = None
        self._emit(s, AlertState.INACTIVE, state, at, reason, out)

    def _leave_flapping(self, s: _Series, at: int, reason: str, out: list[Transition]) -> None:
        """The one transition out of flapping: to firing/acknowledged if the condition holds."""
        a = s.alert
        assert a is not None and a.state is AlertState.FLAPPING
        if s.active:
            to = AlertState.ACKNOWLEDGED if a.acked is not None else AlertState.FIRING
            self._emit(s, AlertState.FLAPPING, to, at, f"{reason}, condition holds", out)
            a.state = to
            if a.fired is None:
                a.fired = at
        else:
            self._close(s, at, f"{reason}, condition clear", out)

    def _close(self, s: _Series, at: int, reason: str, out: list[Transition]) -> None:
        a = s.alert
        assert a is not None
        self._emit(s, a.state, AlertState.RESOLVED, at, reason, out)
        s.alert = None
        s.cleared_at = None
        self._arm(s)

    def _emit(self, s: _Series, frm: AlertState, to: AlertState, at: int, reason: str, out: list[Transition]) -> None:
        a = s.alert
        assert a is not None
        s.last_change = at
        cr = s.rule
        if to is AlertState.PENDING:
            notify = False
        elif to is AlertState.RESOLVED:
            notify = frm is not AlertState.PENDING
        else:
            notify = True
        out.append(
            Transition(
                fingerprint=s.fingerprint,
                rule_id=cr.id,
                tenant_id=s.tenant_id,
                device_id=s.device_id,
                from_state=frm,
                to_state=to,
                at=from_us(at),
                value=a.value,
                reason=reason,
                labels=dict(s.labels),
                severity=cr.rule.severity,
                shadow=cr.rule.shadow,
                children=a.children,
                group=s.group,
                alert_id=a.alert_id,
                count=a.count,
                notify=notify and not cr.rule.shadow,
            )
        )

    # ------------------------------------------------------------------ (re)building
    def _rebuild(self, rules: Iterable[Any], devices: list[DeviceInfo]) -> list[Transition]:
        models = load_rules(rules)
        by_id = {r.id: r for r in models}
        crules = sorted((_CRule(r, by_id) for r in models), key=lambda c: c.id)
        cr_by_id = {c.id: c for c in crules}
        self._rule_models = models
        self._crules = crules
        out: list[Transition] = []
        now = self._clock

        infos = {(d.tenant_id, d.device_id): d for d in devices}
        for key in [k for k in self._devices if k not in infos]:
            del self._devices[key]
        for key, info in infos.items():
            dev = self._devices.get(key)
            if dev is None:
                dev = self._devices[key] = _Dev(info)
                dev.armed = now
            dev.info = info
            self._index_device(dev, crules)

        # groups
        wanted_groups: dict[tuple[str, str, str], set[str]] = {}
        for dev in self._devices.values():
            for cr in dev.rules:
                if cr.fleet:
                    gk = (cr.id, dev.key[0], cr.group_key(dev.info))
                    wanted_groups.setdefault(gk, set()).add(dev.key[1])
        for gk in sorted(self._groups):
            g = self._groups[gk]
            cr = cr_by_id.get(gk[0])
            if gk not in wanted_groups or cr is None or not cr.fleet:
                if g.series.alert is not None:
                    self._close(g.series, _at(now, g.series), "rule removed or group empty", out)
                self._cancel_all(g.series)
                del self._groups[gk]
        for gk, members in wanted_groups.items():
            cr = cr_by_id[gk[0]]
            g = self._groups.get(gk)
            if g is None:
                g = self._groups[gk] = _Group(_Series(cr, gk[1], None, gk[2], child=False))
            self._refit(g.series, cr)
            g.series.labels = _labels(cr, gk[1], None, gk[2])
            self._flapping_off(g.series, now, out)
            g.members = members
            g.breaching &= members
        for dev in self._devices.values():
            dev.groups = {cr.id: self._groups[(cr.id, dev.key[0], cr.group_key(dev.info))] for cr in dev.rules if cr.fleet}

        # device-level series
        for key in sorted(self._series):
            s = self._series[key]
            cr = cr_by_id.get(key[0])
            dev = self._devices.get((key[1], key[2]))
            valid = cr is not None and dev is not None and cr in dev.rules and cr.fleet == s.child
            if not valid:
                if s.alert is not None:
                    why = "rule removed" if cr is None else "device no longer targeted by the rule"
                    self._close(s, _at(now, s), why, out)
                self._cancel_all(s)
                del self._series[key]
                continue
            self._refit(s, cr)  # type: ignore[arg-type]
            s.labels = _labels(cr, key[1], dev.info, None)  # type: ignore[arg-type]
            self._flapping_off(s, now, out)
        for dev in self._devices.values():
            for cr in dev.rules:
                if cr.absence and (cr.id, dev.key[0], dev.key[1]) not in self._series:
                    self._new_series(cr, dev)

        for dev in self._devices.values():
            dev.series = {}
        for (rid, tenant, device_id), s in self._series.items():
            self._devices[(tenant, device_id)].series[rid] = s

        # timers are a function of state: recompute them all
        self._wheel.clear()
        for s in self._series.values():
            s.timers = [None, None, None, None]
        for g in self._groups.values():
            g.series.timers = [None, None, None, None]
        for s in self._all_series():
            self._arm(s)
        for s in self._series.values():  # incl. fleet members
            if s.rule.absence:
                self._arm_eval(s, self._devices[(s.tenant_id, s.device_id)])  # type: ignore[index]
        return out

    def _index_device(self, dev: _Dev, crules: list[_CRule]) -> None:
        i = dev.info
        dev.rules = [cr for cr in crules if cr.rule.target.matches(i.tenant_id, i.device_id, i.site_id, i.tags, i.device_type)]
        dev.retention = {}
        for cr in dev.rules:
            for m, w in cr.windows.items():
                dev.retention[m] = max(w, dev.retention.get(m, 0))
        for m in [m for m in dev.buffers if m not in dev.retention]:
            del dev.buffers[m]
        dev.stream_specs = {}
        for cr in dev.rules:
            for m, specs in cr.streams.items():
                dev.stream_specs.setdefault(m, {}).update(specs)
        keys = {k for specs in dev.stream_specs.values() for k in specs}
        for k in [k for k in dev.streams if k not in keys]:
            del dev.streams[k]

    def _add_unknown_device(self, tenant_id: str, device_id: str) -> _Dev:
        """A device that is not in the inventory: watched from now with no site/tags."""
        info = DeviceInfo(tenant_id, device_id)
        dev = self._devices[(tenant_id, device_id)] = _Dev(info)
        dev.armed = self._clock
        self._index_device(dev, self._crules)
        for cr in dev.rules:
            if cr.fleet:
                gk = (cr.id, tenant_id, cr.group_key(info))
                g = self._groups.get(gk)
                if g is None:
                    g = self._groups[gk] = _Group(_Series(cr, tenant_id, None, gk[2], child=False))
                    g.series.labels = _labels(cr, tenant_id, None, gk[2])
                g.members.add(device_id)
                dev.groups[cr.id] = g
            if cr.absence:
                s = self._new_series(cr, dev)
                self._arm_eval(s, dev)
        return dev

    def _new_series(self, cr: _CRule, dev: _Dev) -> _Series:
        s = _Series(cr, dev.key[0], dev.key[1], None, child=cr.fleet)
        s.labels = _labels(cr, dev.key[0], dev.info, None)
        self._series[(cr.id, dev.key[0], dev.key[1])] = s
        dev.series[cr.id] = s
        return s

    @staticmethod
    def _refit(s: _Series, cr: _CRule) -> None:
        """Attach an edited rule to existing state."""
        s.rule = cr
        if s.sig != cr.sig:
            s.node_state = {}  # hysteresis paths refer to the old condition tree
            s.sig = cr.sig
        if cr.flap_n == 0:
            s.flips = None
        elif s.flips is None or s.flips.maxlen != cr.flap_n:
            s.flips = deque(s.flips or (), maxlen=cr.flap_n)

    def _flapping_off(self, s: _Series, now: int | None, out: list[Transition]) -> None:
        """Flapping detection removed from the rule: leave flapping with its one transition."""
        if s.rule.flap_n == 0 and s.alert is not None and s.alert.state is AlertState.FLAPPING:
            self._leave_flapping(s, _at(now, s), "flapping detection disabled", out)

    def _cancel_all(self, s: _Series) -> None:
        for i in range(4):
            self._set_timer(s, i, None)

    def _all_series(self) -> Iterable[_Series]:
        for s in self._series.values():
            if not s.child:
                yield s
        for g in self._groups.values():
            yield g.series

    def _lookup(self, fingerprint: Fingerprint | str) -> _Series | None:
        fp = Fingerprint.parse(fingerprint) if isinstance(fingerprint, str) else fingerprint
        if fp.subject.startswith("group:"):
            g = self._groups.get((fp.rule_id, fp.tenant_id, fp.subject.removeprefix("group:")))
            return None if g is None else g.series
        s = self._series.get((fp.rule_id, fp.tenant_id, fp.subject))
        return None if s is None or s.child else s

    def _alert_view(self, s: _Series) -> Alert:
        a = s.alert
        assert a is not None
        return Alert(
            alert_id=a.alert_id,
            fingerprint=s.fingerprint,
            rule_id=s.rule.id,
            tenant_id=s.tenant_id,
            device_id=s.device_id,
            group=s.group,
            state=a.state,
            severity=s.rule.rule.severity,
            labels=dict(s.labels),
            shadow=s.rule.rule.shadow,
            started_at=from_us(a.started),
            fired_at=None if a.fired is None else from_us(a.fired),
            acknowledged_at=None if a.acked is None else from_us(a.acked),
            last_seen=from_us(a.last_seen),
            count=a.count,
            value=a.value,
            children=a.children,
        )

    # ------------------------------------------------------------------ snapshot helpers
    @staticmethod
    def _dump_series(s: _Series) -> dict[str, Any]:
        a = s.alert
        return {
            "rule_id": s.rule.id,
            "tenant_id": s.tenant_id,
            "device_id": s.device_id,
            "child": s.child,
            "sig": s.sig,
            "severity": s.rule.rule.severity,
            "shadow": s.rule.rule.shadow,
            "labels": dict(s.labels),
            "active": s.active,
            "node_state": dict(s.node_state),
            "flips": None if s.flips is None else list(s.flips),
            "value": s.value,
            "last_eval": s.last_eval,
            "last_breach": s.last_breach,
            "last_change": s.last_change,
            "cleared_at": s.cleared_at,
            "n_alerts": s.n_alerts,
            "floor": s.floor,
            "alert": None
            if a is None
            else {
                "alert_id": a.alert_id,
                "state": a.state.value,
                "started": a.started,
                "fired": a.fired,
                "acked": a.acked,
                "count": a.count,
                "last_seen": a.last_seen,
                "value": a.value,
                "children": list(a.children),
            },
        }

    @staticmethod
    def _load_series(d: Mapping[str, Any], group: str | None) -> _Series:
        # rule is attached by _rebuild (_refit); a stand-in keeps __init__ simple
        stub = _StubRule(d, group)
        s = _Series(stub, d["tenant_id"], d["device_id"], group, child=d["child"])  # type: ignore[arg-type]
        s.labels = dict(d["labels"])
        s.active = d["active"]
        s.node_state = dict(d["node_state"])
        if d["flips"] is not None:
            s.flips = deque(d["flips"], maxlen=max(len(d["flips"]), 1))
        s.value = d["value"]
        s.last_eval = d["last_eval"]
        s.last_breach = d["last_breach"]
        s.last_change = d["last_change"]
        s.cleared_at = d["cleared_at"]
        s.n_alerts = d["n_alerts"]
        s.floor = d["floor"]
        ad = d["alert"]
        if ad is not None:
            a = _AlertRec(ad["alert_id"], AlertState(ad["state"]), ad["started"], ad["value"], tuple(ad["children"]))
            a.fired, a.acked, a.count, a.last_seen = ad["fired"], ad["acked"], ad["count"], ad["last_seen"]
            s.alert = a
        return s


class _StubRule:
    """Stand-in for a compiled rule while a snapshot is being loaded: enough to close the
    alert of a rule that no longer exists (severity/shadow as they were)."""

    def __init__(self, d: Mapping[str, Any], group: str | None) -> None:
        self.id, self.sig = d["rule_id"], d["sig"]
        self.flap_n = len(d["flips"]) if d["flips"] else 0
        self.fleet = d["child"] or group is not None
        self.absence = False
        self.for_us = self.kff_us = 0
        self.resolve_us = None
        self.rule = _StubModel(d["severity"], d["shadow"])


@dataclass(frozen=True)
class _StubModel:
    severity: str
    shadow: bool


def _at(now: int | None, s: _Series) -> int:
    return s.last_change if now is None or now < s.last_change else now


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:g}"


def _labels(cr: _CRule, tenant_id: str, info: DeviceInfo | None, group: str | None) -> dict[str, str]:
    """Rule labels + identity labels for routing (identity keys cannot be overridden)."""
    out = dict(cr.rule.labels)
    if info is not None:
        for k, v in info.tags.items():
            out[f"tag.{k}"] = v
        if info.site_id is not None:
            out["site_id"] = info.site_id
        if info.device_type is not None:
            out["device_type"] = info.device_type
        out["device_id"] = info.device_id
    if group is not None:
        out["group"] = group
        if group.startswith("site:"):
            out["site_id"] = group.removeprefix("site:")
    out["tenant_id"] = tenant_id
    out["rule_id"] = cr.id
    out["severity"] = cr.rule.severity
    return out
