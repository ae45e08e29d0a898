"""Persistence of engine transitions and engine snapshots (pulse/migrations/0003 + 0005).

Contract with the notification worker: every transition gets one ``alert_events`` row
(actor ``engine``); a transition with ``notify`` that is neither shadow nor silenced also
gets ONE ``notification_outbox`` row in the same transaction, and ``pg_notify('pulse_outbox',
'<event_id>')`` wakes the worker when that transaction commits.

Idempotent: the engine's alert ids are deterministic, and the unique index
``alert_events_transition_once (alert_id, at, from_state, to_state)`` makes a replayed
transition a no-op (no second event, no second outbox row, no state rewind).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alerting.engine import Alert, DeviceInfo, Transition
from alerting.silences import _row_to_silence, is_silenced

__all__ = ["StoreResult", "record_transitions", "save_snapshot", "load_snapshot", "sync_open_alerts",
           "load_devices", "load_rule_definitions", "rules_version", "ENGINE_ACTOR", "SCORES_CHANNEL",
           "pending_score_batches", "mark_score_batches_delivered"]

ENGINE_ACTOR = "engine"
SCORES_CHANNEL = "pulse_anomaly_scores"  # the scoring asset notifies it after writing scores


@dataclass
class StoreResult:
    events: int = 0  # new alert_events rows
    duplicates: int = 0  # transitions already recorded (replay)
    outbox: int = 0
    silenced: int = 0
    event_ids: list[int] | None = None


def _summary(t: Transition) -> str:
    return t.reason


def record_transitions(conn: psycopg.Connection, transitions: Sequence[Transition]) -> StoreResult:
    """Write transitions in order, in ONE transaction (the caller's connection is left
    committed). Silences are read inside the same transaction."""
    res = StoreResult(event_ids=[])
    if not transitions:
        return res
    with conn.transaction():
        silences_cache: dict[str, list] = {}
        for t in transitions:
            _record_one(conn, t, res, silences_cache)
    return res


def _ensure_alert(conn: psycopg.Connection, t: Transition) -> None:
    labels = dict(t.labels)
    params = {
        "alert_id": t.alert_id, "fp": str(t.fingerprint), "tenant": t.tenant_id, "rule": t.rule_id,
        "subject": t.fingerprint.subject, "device": t.device_id, "site": labels.get("site_id"),
        "severity": t.severity, "state": t.to_state.value, "summary": _summary(t), "value": t.value,
        "labels": Jsonb(labels), "children": Jsonb(list(t.children)) if t.group is not None else None,
        "count": max(t.count, 1), "shadow": t.shadow, "at": t.at,
    }
    sql = """insert into alerts (alert_id, fingerprint, tenant_id, rule_id, subject, device_id, site_id, severity,
                                 state, summary, value, labels, children, count, shadow, started_at, last_seen)
             values (%(alert_id)s, %(fp)s, %(tenant)s, %(rule)s, %(subject)s, %(device)s, %(site)s, %(severity)s,
                     %(state)s, %(summary)s, %(value)s, %(labels)s, %(children)s, %(count)s, %(shadow)s,
                     %(at)s, %(at)s)
             on conflict do nothing returning alert_id"""
    if conn.execute(sql, params).fetchone() is not None:
        return
    if conn.execute("select 1 from alerts where alert_id = %s", (t.alert_id,)).fetchone() is not None:
        return
    # Another open alert holds the fingerprint (engine state lost, e.g. no snapshot after a
    # crash): the engine is the source of truth, so that one is closed as superseded.
    stale = conn.execute(
        """update alerts set state = 'resolved', resolved_at = greatest(%s, last_seen), resolved_by = %s,
                  updated_at = now()
           where fingerprint = %s and state <> 'resolved' returning alert_id, state""",
        (t.at, ENGINE_ACTOR, str(t.fingerprint)),
    ).fetchall()
    for alert_id, state in stale:
        conn.execute(
            """insert into alert_events (alert_id, at, from_state, to_state, action, actor, reason)
               values (%s, %s, %s, 'resolved', 'resolve', %s, %s)""",
            (alert_id, t.at, state, ENGINE_ACTOR, f"superseded by {t.alert_id}"),
        )
    conn.execute(sql, params)


def _record_one(conn: psycopg.Connection, t: Transition, res: StoreResult, silences_cache: dict) -> None:
    _ensure_alert(conn, t)
    silenced_by = None
    if t.notify and not t.shadow:
        cache = silences_cache.get(t.tenant_id)
        if cache is None:  # one query per tenant per batch
            cache = silences_cache[t.tenant_id] = active_silences_any(conn, t.tenant_id)
        silenced_by = is_silenced(t.labels, t.at, cache)
    detail: dict[str, Any] = {"count": t.count, "severity": t.severity, "shadow": t.shadow}
    if t.children:
        detail["children"] = list(t.children)
    if silenced_by is not None:
        detail["silence_id"] = silenced_by.silence_id
    row = conn.execute(
        """insert into alert_events (alert_id, at, from_state, to_state, action, actor, reason, value, notify,
                                     silenced, detail)
           values (%s, %s, %s, %s, 'transition', %s, %s, %s, %s, %s, %s)
           on conflict (alert_id, at, from_state, to_state) where action = 'transition' do nothing
           returning event_id""",
        (t.alert_id, t.at, t.from_state.value, t.to_state.value, ENGINE_ACTOR, t.reason, t.value, t.notify,
         silenced_by is not None, Jsonb(detail)),
    ).fetchone()
    if row is None:
        res.duplicates += 1
        return
    event_id = row[0]
    res.events += 1
    res.event_ids.append(event_id)  # type: ignore[union-attr]
    to = t.to_state.value
    # state only moves forward: a resolved row (by the engine or an operator) stays resolved
    conn.execute(
        """update alerts set
               state = case when state = 'resolved' then state else %(to)s end,
               value = coalesce(%(value)s, value),
               children = coalesce(%(children)s, children),
               count = greatest(count, %(count)s),
               last_seen = greatest(last_seen, %(at)s),
               acknowledged_at = case when %(to)s = 'acknowledged' then coalesce(acknowledged_at, %(at)s)
                                      else acknowledged_at end,
               resolved_at = case when %(to)s = 'resolved' and state <> 'resolved' then %(at)s else resolved_at end,
               resolved_by = case when %(to)s = 'resolved' and state <> 'resolved' then %(actor)s
                                  else resolved_by end,
               updated_at = now()
           where alert_id = %(id)s""",
        {"to": to, "value": t.value, "children": Jsonb(list(t.children)) if t.group is not None else None,
         "count": t.count, "at": t.at, "actor": ENGINE_ACTOR, "id": t.alert_id},
    )
    if silenced_by is not None:
        res.silenced += 1
        return
    if t.notify and not t.shadow:
        conn.execute("insert into notification_outbox (event_id, alert_id) values (%s, %s)", (event_id, t.alert_id))
        conn.execute("select pg_notify('pulse_outbox', %s)", (str(event_id),))
        res.outbox += 1


def active_silences_any(conn: psycopg.Connection, tenant_id: str) -> list:
    """Silences of the tenant not yet over (the time check per transition is in memory:
    transitions of one batch can span a range)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """select * from silences where (tenant_id is null or tenant_id = %s)
                 and (expired_at is null or expired_at > now() - interval '7 days')""",
            (tenant_id,),
        )
        return [_row_to_silence(r) for r in cur.fetchall()]


def sync_open_alerts(conn: psycopg.Connection, alerts: Iterable[Alert]) -> int:
    """Repeats bump count/last_seen/value without a transition: copy them for open alerts."""
    rows = [(a.alert_id, a.count, a.last_seen, a.value) for a in alerts]
    if not rows:
        return 0
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """update alerts set count = greatest(count, %s), last_seen = greatest(last_seen, %s),
                      value = coalesce(%s, value), updated_at = now()
               where alert_id = %s and state <> 'resolved'""",
            [(c, ls, v, i) for i, c, ls, v in rows],
        )
    return len(rows)


# ------------------------------------------------------------------ snapshots


def save_snapshot(conn: psycopg.Connection, partition_key: str, snapshot: Mapping[str, Any], taken_at: datetime) -> None:
    with conn.transaction():
        conn.execute(
            """insert into engine_snapshots (partition_key, taken_at, snapshot) values (%s, %s, %s)
               on conflict (partition_key) do update set taken_at = excluded.taken_at, snapshot = excluded.snapshot""",
            (partition_key, taken_at, Jsonb(snapshot, dumps=lambda o: json.dumps(o, allow_nan=False))),
        )


def load_snapshot(conn: psycopg.Connection, partition_key: str) -> dict[str, Any] | None:
    row = conn.execute("select snapshot from engine_snapshots where partition_key = %s", (partition_key,)).fetchone()
    return None if row is None else row[0]


# ------------------------------------------------------------------ inputs of the engine


def load_devices(conn: psycopg.Connection, tenant_id: str | None = None) -> dict[str, list[DeviceInfo]]:
    """Active devices of the registry, by tenant (disabled devices send nothing we accept)."""
    rows = conn.execute(
        """select tenant_id, device_id, site_id, tags, device_type from devices
           where status = 'active' and (%s::text is null or tenant_id = %s) order by tenant_id, device_id""",
        (tenant_id, tenant_id),
    ).fetchall()
    out: dict[str, list[DeviceInfo]] = {}
    for tenant, device, site, tags, dtype in rows:
        out.setdefault(tenant, []).append(DeviceInfo(tenant, device, site, dict(tags or {}), dtype))
    return out


def load_rule_definitions(conn: psycopg.Connection) -> list[dict]:
    from alerting.config import load_objects

    return load_objects(conn, "rule")


def rules_version(conn: psycopg.Connection) -> tuple:
    """Cheap change detector for rules and the fleet (one round trip)."""
    return tuple(conn.execute(
        """select (select count(*) from config_objects where kind = 'rule'),
                  (select coalesce(sum(version), 0) from config_objects where kind = 'rule'),
                  (select max(updated_at) from config_objects where kind = 'rule'),
                  (select count(*) from devices),
                  (select max(updated_at) from devices)""").fetchone())


# ------------------------------------------------------------------ batch anomaly scores


def pending_score_batches(conn: psycopg.Connection, limit: int = 5000) -> list[tuple]:
    """Undelivered rows of the scoring asset, oldest first:
    (batch_id, tenant, device, metric, peak calibrated score of the hour)."""
    return conn.execute(
        """select batch_id, tenant_id, device_id, metric, peak from anomaly_score_batches
           where delivered_at is null order by batch_id limit %s""", (limit,)).fetchall()


def mark_score_batches_delivered(conn: psycopg.Connection, batch_ids: Sequence[int]) -> None:
    with conn.transaction():
        conn.execute("update anomaly_score_batches set delivered_at = now() where batch_id = any(%s)",
                     (list(batch_ids),))
