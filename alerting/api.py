"""The operator API: one set of functions for the CLI, the Streamlit app and tests.

Operator actions are written here, in the caller's process, in ONE transaction: the
alert row, its ``alert_events`` row (actor = the acting user), the notification outbox
row when the action notifies (ack and resolve of a firing alert; never shadow, never
silenced) and two notifications: ``pulse_outbox`` (delivery worker) and
``pulse_alert_actions`` (the live engine, which then calls ``acknowledge``/``resolve``
so its state agrees — it does not record the action a second time).

Alerts are referred to by id (``tenant/rule/subject@µs#n``), by a unique prefix of one,
or by fingerprint (``tenant/rule/subject``: its open alert).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alerting.silences import add_silence, expire_silence, is_silenced, list_silences, matcher_from_options
from alerting.store import active_silences_any
from pulse.errors import UserError

__all__ = [
    "RESOLUTIONS", "ACTIONS_CHANNEL", "find_alert", "list_alerts", "show_alert", "acknowledge", "resolve",
    "comment", "add_silence", "list_silences", "expire_silence", "matcher_from_options",
]

ACTIONS_CHANNEL = "pulse_alert_actions"
RESOLUTIONS = ("real_fault", "false_alarm", "maintenance", "other")
_STATES = ("pending", "firing", "acknowledged", "flapping", "resolved")


def _user(user: str | None) -> str:
    if not user or not user.strip():
        raise UserError("an acting user is required (--user or PULSE_USER)")
    return user.strip()


def find_alert(conn: psycopg.Connection, ref: str, *, for_update: bool = False) -> dict[str, Any]:
    lock = " for update" if for_update else ""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"select * from alerts where alert_id = %s{lock}", (ref,)).fetchone()
        if row is None and "@" not in ref and ref.count("/") == 2:
            row = cur.execute(f"select * from alerts where fingerprint = %s and state <> 'resolved'{lock}",
                              (ref,)).fetchone()
            if row is None:
                raise UserError(f"no open alert for fingerprint {ref!r}")
        if row is None:
            rows = cur.execute(f"select * from alerts where alert_id like %s order by started_at desc limit 2{lock}",
                               (ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",)).fetchall()
            if len(rows) > 1:
                raise UserError(f"alert id prefix {ref!r} is ambiguous; give more of the id")
            row = rows[0] if rows else None
    if row is None:
        raise UserError(f"alert {ref!r} does not exist (see `pulse alerts list`)")
    return row


def list_alerts(conn: psycopg.Connection, *, tenant: str | None = None, state: str | None = "open",
                rule: str | None = None, device: str | None = None, include_shadow: bool = True,
                limit: int = 100) -> list[dict[str, Any]]:
    """Alerts newest first. ``state``: ``open`` (not resolved), ``all``/None, or one state."""
    if state not in (None, "open", "all") + _STATES:
        raise UserError(f"unknown state {state!r}; use open, all or one of {', '.join(_STATES)}")
    if limit <= 0:
        raise UserError("--limit must be positive")
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """select alert_id, fingerprint, tenant_id, rule_id, subject, device_id, site_id, severity, state,
                      summary, value, count, shadow, started_at, last_seen, acknowledged_at, acknowledged_by,
                      resolved_at, resolved_by, resolution, labels, children
               from alerts
               where (%(tenant)s::text is null or tenant_id = %(tenant)s)
                 and (%(rule)s::text is null or rule_id = %(rule)s)
                 and (%(device)s::text is null or device_id = %(device)s)
                 and (%(shadow)s or not shadow)
                 and (%(state)s::text is null or %(state)s = 'all'
                      or (%(state)s = 'open' and state <> 'resolved') or state = %(state)s)
               order by started_at desc, alert_id limit %(limit)s""",
            {"tenant": tenant, "rule": rule, "device": device, "shadow": include_shadow, "state": state,
             "limit": limit},
        ).fetchall()
    conn.commit()
    return rows


def show_alert(conn: psycopg.Connection, ref: str) -> dict[str, Any]:
    """One alert with its event timeline (oldest first) and outbox status per event."""
    alert = find_alert(conn, ref)
    with conn.cursor(row_factory=dict_row) as cur:
        alert["events"] = cur.execute(
            """select e.event_id, e.at, e.action, e.from_state, e.to_state, e.actor, e.reason, e.value, e.notify,
                      e.silenced, e.detail, e.created_at,
                      (select count(*) from notification_outbox o where o.event_id = e.event_id) as outbox_rows
               from alert_events e where e.alert_id = %s order by e.at, e.event_id""",
            (alert["alert_id"],),
        ).fetchall()
    conn.commit()
    return alert


def _record_action(conn: psycopg.Connection, alert: Mapping[str, Any], *, action: str, to_state: str | None,
                   user: str, reason: str | None, notify: bool, at: datetime, detail: dict | None = None) -> dict:
    silenced = False
    if notify and not alert["shadow"]:
        silenced = is_silenced(alert["labels"], at, active_silences_any(conn, alert["tenant_id"])) is not None
    else:
        notify = False
    row = conn.execute(
        """insert into alert_events (alert_id, at, from_state, to_state, action, actor, reason, value, notify,
                                     silenced, detail)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning event_id""",
        (alert["alert_id"], at, alert["state"] if to_state else None, to_state, action, user, reason, alert["value"],
         notify, silenced, Jsonb(detail) if detail else None),
    ).fetchone()
    event_id = row[0]
    if notify and not silenced:
        conn.execute("insert into notification_outbox (event_id, alert_id) values (%s, %s)", (event_id, alert["alert_id"]))
        conn.execute("select pg_notify('pulse_outbox', %s)", (str(event_id),))
    if to_state is not None:
        conn.execute("select pg_notify(%s, %s)", (ACTIONS_CHANNEL, json.dumps(
            {"action": action, "alert_id": alert["alert_id"], "tenant_id": alert["tenant_id"]})))
    return {"event_id": event_id, "alert_id": alert["alert_id"], "action": action, "from_state": alert["state"],
            "to_state": to_state, "actor": user, "at": at, "notify": notify, "silenced": silenced}


def acknowledge(conn: psycopg.Connection, ref: str, *, user: str, comment: str | None = None) -> dict[str, Any]:
    """firing → acknowledged (flapping stays flapping, the ack is recorded). Stops escalation."""
    user = _user(user)
    with conn.transaction():
        alert = find_alert(conn, ref, for_update=True)
        if alert["state"] == "resolved":
            raise UserError(f"alert {alert['alert_id']} is resolved; nothing to acknowledge")
        if alert["acknowledged_at"] is not None:
            raise UserError(f"alert {alert['alert_id']} was already acknowledged by {alert['acknowledged_by']} "
                            f"at {alert['acknowledged_at'].isoformat()}")
        if alert["state"] == "pending":
            raise UserError(f"alert {alert['alert_id']} is pending (not firing yet); it cannot be acknowledged")
        at = datetime.now(UTC)
        to = "flapping" if alert["state"] == "flapping" else "acknowledged"
        conn.execute(
            """update alerts set state = %s, acknowledged_at = %s, acknowledged_by = %s, updated_at = now()
               where alert_id = %s""",
            (to, at, user, alert["alert_id"]),
        )
        ev = _record_action(conn, alert, action="ack", to_state=to, user=user, reason=comment or "acknowledged",
                            notify=True, at=at)
    return ev


def resolve(conn: psycopg.Connection, ref: str, *, user: str, reason: str, comment: str | None = None) -> dict[str, Any]:
    """Close an alert by hand; ``reason`` is the label detector feedback learns from."""
    user = _user(user)
    if reason not in RESOLUTIONS:
        raise UserError(f"resolution reason {reason!r} is not one of {', '.join(RESOLUTIONS)}")
    with conn.transaction():
        alert = find_alert(conn, ref, for_update=True)
        if alert["state"] == "resolved":
            raise UserError(f"alert {alert['alert_id']} is already resolved "
                            f"(by {alert['resolved_by']} at {alert['resolved_at'].isoformat()})")
        at = datetime.now(UTC)
        conn.execute(
            """update alerts set state = 'resolved', resolved_at = %s, resolved_by = %s, resolution = %s,
                      updated_at = now() where alert_id = %s""",
            (at, user, reason, alert["alert_id"]),
        )
        ev = _record_action(conn, alert, action="resolve", to_state="resolved", user=user,
                            reason=comment or f"resolved by hand: {reason}", notify=alert["state"] != "pending",
                            at=at, detail={"resolution": reason})
    return ev


def comment(conn: psycopg.Connection, ref: str, *, user: str, text: str) -> dict[str, Any]:
    user = _user(user)
    if not text or not text.strip():
        raise UserError("a comment needs text")
    with conn.transaction():
        alert = find_alert(conn, ref)
        ev = _record_action(conn, alert, action="comment", to_state=None, user=user, reason=text.strip(),
                            notify=False, at=datetime.now(UTC))
    return ev
