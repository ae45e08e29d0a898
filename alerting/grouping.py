"""Route grouping, as Alertmanager does it: alerts of one route with equal ``group_by``
labels are batched into one notification.

* a new group waits ``group_wait`` before its first notification (so a burst is one page),
* later events of a notified group wait until ``group_interval`` after the last flush,
* a group with alerts still firing is re-notified every ``repeat_interval``,
* a group whose alerts are all resolved (and with nothing pending) is deleted.

Grouping applies to routes that set ``group_by`` or a positive ``group_wait``; an empty
``group_by`` then means one group for the whole route. State lives in
``notification_groups`` so group timers survive restarts like every other timer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alerting.routing import Route

FIRING_KINDS = ("firing", "flapping", "reminder", "flapping_ended")


def is_grouped(route: Route) -> bool:
    return bool(route.group_by) or route.group_wait > 0


def group_key(route: Route, labels: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Stable key from the route's ``group_by`` labels (missing labels group as empty)."""
    values = {name: str(labels.get(name, "")) for name in route.group_by}
    text = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16], values


def add_event(conn: psycopg.Connection, route: Route, labels: dict[str, Any], alert_id: str, event_id: int) -> None:
    """Queue an event in its group and (re)arm the group's flush timer."""
    key, values = group_key(route, labels)
    conn.execute(
        """insert into notification_groups as g (route_id, group_key, group_labels, alert_ids, pending_events,
                                                 next_flush_at)
           values (%(route)s, %(key)s, %(labels)s, array[%(alert)s], array[%(event)s::bigint],
                   now() + make_interval(secs => %(wait)s))
           on conflict (route_id, group_key) do update set
               alert_ids = case when %(alert)s = any(g.alert_ids) then g.alert_ids
                                else g.alert_ids || %(alert)s end,
               pending_events = g.pending_events || %(event)s::bigint,
               -- never notified yet: keep the group_wait deadline; otherwise no sooner than
               -- group_interval after the last flush (and never later than already planned)
               next_flush_at = case when g.last_flush_at is null
                                    then coalesce(g.next_flush_at, now() + make_interval(secs => %(wait)s))
                                    else least(coalesce(g.next_flush_at, 'infinity'::timestamptz),
                                               greatest(now(), g.last_flush_at
                                                        + make_interval(secs => %(interval)s)))
                               end,
               updated_at = now()""",
        {"route": route.id, "key": key, "labels": Jsonb(values), "alert": alert_id, "event": event_id,
         "wait": route.group_wait, "interval": route.group_interval},
    )


def flush_due(
    conn: psycopg.Connection,
    routes: dict[str, Route],
    deliver: Callable[[Route, dict[str, Any], list[dict[str, Any]], str, int], int],
    *,
    limit: int = 50,
) -> int:
    """Flush every due group (claimed with SKIP LOCKED, one transaction). ``deliver(route,
    group_row, items, kind, flush_no)`` creates the deliveries; items are event+alert rows.
    Returns the number of groups flushed."""
    flushed = 0
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        groups = cur.execute(
            """select * from notification_groups where next_flush_at <= now()
               order by next_flush_at limit %s for update skip locked""",
            (limit,),
        ).fetchall()
        for g in groups:
            route = routes.get(g["route_id"])
            if route is None:  # route removed from the config: nothing to notify
                cur.execute("delete from notification_groups where route_id = %s and group_key = %s",
                            (g["route_id"], g["group_key"]))
                continue
            if g["pending_events"]:
                items = cur.execute(
                    """select e.event_id, e.action, e.from_state, e.to_state, e.at, e.reason, e.value as event_value,
                              a.*
                       from alert_events e join alerts a using (alert_id)
                       where e.event_id = any(%s) order by e.event_id""",
                    (g["pending_events"],),
                ).fetchall()
                kind = "new"
            else:  # repeat_interval: re-notify what is still firing
                items = cur.execute(
                    """select null::bigint as event_id, 'reminder' as action, a.state as from_state,
                              a.state as to_state, now() as at, null as reason, null::float8 as event_value, a.*
                       from alerts a where a.alert_id = any(%s) and a.state in ('firing', 'flapping')
                       order by a.started_at""",
                    (g["alert_ids"],),
                ).fetchall()
                kind = "repeat"
            if items:
                deliver(route, g, items, kind, g["flushes"] + 1)
            still = cur.execute(
                "select array_agg(alert_id order by alert_id) from alerts where alert_id = any(%s) and state <> 'resolved'",
                (g["alert_ids"],),
            ).fetchone()["array_agg"] or []
            if not still:
                cur.execute("delete from notification_groups where route_id = %s and group_key = %s",
                            (g["route_id"], g["group_key"]))
            else:
                cur.execute(
                    """update notification_groups set pending_events = '{}', alert_ids = %s, last_flush_at = now(),
                              flushes = flushes + %s, updated_at = now(),
                              next_flush_at = now() + make_interval(secs => %s)
                       where route_id = %s and group_key = %s""",
                    (still, 1 if items else 0, route.repeat_interval, g["route_id"], g["group_key"]),
                )
            flushed += 1
    return flushed


def summarize(items: list[dict[str, Any]], kinds: list[str]) -> tuple[str, str]:
    """(event kind, summary line) for a grouped notification."""
    firing = sum(1 for k in kinds if k in FIRING_KINDS)
    resolved = sum(1 for k in kinds if k == "resolved")
    event = "firing" if firing else (kinds[0] if kinds else "firing")
    if kinds and all(k == "reminder" for k in kinds):
        event = "reminder"
    parts = [f"{len({i['alert_id'] for i in items})} alert(s)"]
    if firing:
        parts.append(f"{firing} firing")
    if resolved:
        parts.append(f"{resolved} resolved")
    lines = "; ".join(f"{i['device_id'] or 'fleet'}: {i['summary'] or i['rule_id']}" for i in items[:5])
    more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
    return event, f"{', '.join(parts)} — {lines}{more}"


def group_extra(route: Route, g: dict[str, Any], items: list[dict[str, Any]], kinds: list[str]) -> dict[str, Any]:
    return {
        "group": {
            "route": route.id,
            "key": g["group_key"],
            "labels": g["group_labels"],
            "alerts": [
                {"alert_id": i["alert_id"], "event": k, "event_id": i["event_id"], "device_id": i["device_id"],
                 "severity": i["severity"], "summary": i["summary"]}
                for i, k in zip(items, kinds)
            ],
        }
    }
