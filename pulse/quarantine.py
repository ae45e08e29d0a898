"""Queries over quarantined telemetry (written by ingest; read by the CLI and the app)."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row


def counts(conn: psycopg.Connection, tenant_id: str | None = None) -> dict[str, int]:
    rows = conn.execute(
        """select reason, count(*) from quarantine where (%(t)s::text is null or tenant_id = %(t)s)
           group by reason order by count(*) desc""",
        {"t": tenant_id},
    ).fetchall()
    return {reason: n for reason, n in rows}


def recent(conn: psycopg.Connection, *, reason: str | None = None, tenant_id: str | None = None,
           limit: int = 50) -> list[dict]:
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(
        """select id, received_at, transport, tenant_id, device_id, topic, reason, detail, payload
           from quarantine
           where (%(r)s::text is null or reason = %(r)s) and (%(t)s::text is null or tenant_id = %(t)s)
           order by id desc limit %(n)s""",
        {"r": reason, "t": tenant_id, "n": limit},
    ).fetchall()
    for row in rows:
        payload = bytes(row.pop("payload"))
        row["payload_bytes"] = len(payload)
        row["payload_preview"] = payload[:200].decode("utf-8", errors="replace")
    return rows
