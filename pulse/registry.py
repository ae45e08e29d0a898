"""Device registry: tenants, sites, devices and their bearer tokens.

Tokens are random (``secrets``), shown once, and stored only as SHA-256: a token is a
high-entropy secret, so a fast unsalted hash is enough and lets ingest look a device
up by the hash of the presented token in O(1).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from pulse.envelope import DEVICE_ID_RE
from pulse.errors import UserError

TOKEN_PREFIX = "pt_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Device:
    tenant_id: str
    device_id: str
    site_id: str | None = None
    device_type: str | None = None
    name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    status: str = "active"


@dataclass(frozen=True)
class IssuedToken:
    tenant_id: str
    device_id: str
    token: str


# ------------------------------------------------------------------ tenants and sites


def upsert_tenant(conn: psycopg.Connection, tenant_id: str, name: str, time_zone: str = "UTC",
                  auto_register: bool = False) -> None:
    conn.execute(
        """insert into tenants (tenant_id, name, time_zone, auto_register) values (%s, %s, %s, %s)
           on conflict (tenant_id) do update set name = excluded.name, time_zone = excluded.time_zone,
               auto_register = excluded.auto_register, updated_at = now()""",
        (tenant_id, name, time_zone, auto_register),
    )


def upsert_site(conn: psycopg.Connection, tenant_id: str, site_id: str, name: str, time_zone: str | None = None,
                latitude: float | None = None, longitude: float | None = None) -> None:
    conn.execute(
        """insert into sites (tenant_id, site_id, name, time_zone, latitude, longitude)
           values (%s, %s, %s, %s, %s, %s)
           on conflict (tenant_id, site_id) do update set name = excluded.name, time_zone = excluded.time_zone,
               latitude = excluded.latitude, longitude = excluded.longitude, updated_at = now()""",
        (tenant_id, site_id, name, time_zone, latitude, longitude),
    )


def tenant_exists(conn: psycopg.Connection, tenant_id: str) -> bool:
    return conn.execute("select 1 from tenants where tenant_id = %s", (tenant_id,)).fetchone() is not None


def _require_tenant(conn: psycopg.Connection, tenant_id: str) -> None:
    if not tenant_exists(conn, tenant_id):
        raise UserError(f"tenant {tenant_id!r} does not exist (create it with `pulse config apply`)")


def _require_site(conn: psycopg.Connection, tenant_id: str, site_id: str | None) -> None:
    if site_id is None:
        return
    row = conn.execute("select 1 from sites where tenant_id = %s and site_id = %s", (tenant_id, site_id)).fetchone()
    if row is None:
        raise UserError(f"site {site_id!r} does not exist in tenant {tenant_id!r}")


# ------------------------------------------------------------------ devices


def _check_device_id(device_id: str) -> None:
    if not DEVICE_ID_RE.match(device_id):
        raise UserError(
            f"device id {device_id!r} is not valid: letters, digits and . _ : - (max 128, no / + #)"
        )


def device_exists(conn: psycopg.Connection, tenant_id: str, device_id: str) -> bool:
    row = conn.execute("select 1 from devices where tenant_id = %s and device_id = %s", (tenant_id, device_id))
    return row.fetchone() is not None


def upsert_device(conn: psycopg.Connection, device: Device, *, issue_token: bool = False) -> IssuedToken | None:
    """Create or update a device's attributes (never its token). New devices get a token
    when ``issue_token``; the token is returned once and only its hash is stored."""
    _check_device_id(device.device_id)
    token = new_token() if issue_token else None
    row = conn.execute(
        """insert into devices (tenant_id, device_id, site_id, device_type, name, tags, status,
                                token_hash, token_created_at)
           values (%s, %s, %s, %s, %s, %s, %s, %s, case when %s::bytea is null then null else now() end)
           on conflict (tenant_id, device_id) do update set site_id = excluded.site_id,
               device_type = excluded.device_type, name = excluded.name, tags = excluded.tags,
               status = excluded.status, updated_at = now()
           returning (xmax = 0) as inserted""",
        (device.tenant_id, device.device_id, device.site_id, device.device_type, device.name,
         Jsonb(device.tags), device.status, hash_token(token) if token else None,
         hash_token(token) if token else None),
    ).fetchone()
    if token and row[0]:
        return IssuedToken(device.tenant_id, device.device_id, token)
    return None


def add_device(conn: psycopg.Connection, device: Device) -> IssuedToken:
    _require_tenant(conn, device.tenant_id)
    _require_site(conn, device.tenant_id, device.site_id)
    if device_exists(conn, device.tenant_id, device.device_id):
        raise UserError(f"device {device.tenant_id}/{device.device_id} already exists (use rotate-token)")
    issued = upsert_device(conn, device, issue_token=True)
    assert issued is not None
    return issued


def rotate_token(conn: psycopg.Connection, tenant_id: str, device_id: str) -> IssuedToken:
    token = new_token()
    row = conn.execute(
        """update devices set token_hash = %s, token_created_at = now(), updated_at = now()
           where tenant_id = %s and device_id = %s returning 1""",
        (hash_token(token), tenant_id, device_id),
    ).fetchone()
    if row is None:
        raise UserError(f"device {tenant_id}/{device_id} does not exist")
    return IssuedToken(tenant_id, device_id, token)


def set_status(conn: psycopg.Connection, tenant_id: str, device_id: str, status: str) -> None:
    row = conn.execute(
        "update devices set status = %s, updated_at = now() where tenant_id = %s and device_id = %s returning 1",
        (status, tenant_id, device_id),
    ).fetchone()
    if row is None:
        raise UserError(f"device {tenant_id}/{device_id} does not exist")


def auto_register(conn: psycopg.Connection, tenant_id: str, device_id: str) -> bool:
    """Register an unknown device of an auto_register tenant. True if the device exists now."""
    row = conn.execute(
        """insert into devices (tenant_id, device_id, auto_registered)
           select tenant_id, %s, true from tenants where tenant_id = %s and auto_register
           on conflict (tenant_id, device_id) do nothing
           returning 1""",
        (device_id, tenant_id),
    ).fetchone()
    return row is not None or device_exists(conn, tenant_id, device_id)


def list_devices(conn: psycopg.Connection, tenant_id: str | None = None, site_id: str | None = None,
                 status: str | None = None, tags: dict[str, str] | None = None, limit: int = 1000) -> list[dict]:
    return list(conn.cursor(row_factory=psycopg.rows.dict_row).execute(
        """select d.tenant_id, d.device_id, d.site_id, d.device_type, d.name, d.tags, d.status,
                  d.token_created_at, s.last_seen, s.rows
           from devices d left join device_state s using (tenant_id, device_id)
           where (%(tenant)s::text is null or d.tenant_id = %(tenant)s)
             and (%(site)s::text is null or d.site_id = %(site)s)
             and (%(status)s::text is null or d.status = %(status)s)
             and d.tags @> %(tags)s
           order by d.tenant_id, d.device_id
           limit %(limit)s""",
        {"tenant": tenant_id, "site": site_id, "status": status, "tags": Jsonb(tags or {}), "limit": limit},
    ))


# ------------------------------------------------------------------ CSV bulk import

CSV_COLUMNS = ("tenant_id", "device_id", "site_id", "device_type", "name", "tags")


def parse_tags(text: str) -> dict[str, str]:
    """Tags in a CSV cell: a JSON object, or ``key=value;key=value``."""
    text = (text or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("tags must be a JSON object")
        return {str(k): str(v) for k, v in value.items()}
    out = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"tag {part!r} is not key=value")
        key, value = part.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def read_device_csv(text: str, default_tenant: str | None = None) -> list[Device]:
    """Parse a device CSV; errors name the line and column."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "device_id" not in reader.fieldnames:
        raise UserError(f"CSV needs a header with at least device_id; allowed columns: {', '.join(CSV_COLUMNS)}")
    unknown = set(reader.fieldnames) - set(CSV_COLUMNS)
    if unknown:
        raise UserError(f"CSV has unknown columns {sorted(unknown)}; allowed: {', '.join(CSV_COLUMNS)}")
    devices, seen = [], set()
    for line_no, row in enumerate(reader, start=2):
        tenant = (row.get("tenant_id") or default_tenant or "").strip()
        device_id = (row.get("device_id") or "").strip()
        if not tenant:
            raise UserError(f"line {line_no}: tenant_id is empty (give the column or --tenant)")
        if not DEVICE_ID_RE.match(device_id):
            raise UserError(f"line {line_no}, column device_id: {device_id!r} is not a valid device id")
        if (tenant, device_id) in seen:
            raise UserError(f"line {line_no}: device {tenant}/{device_id} appears twice")
        seen.add((tenant, device_id))
        try:
            tags = parse_tags(row.get("tags") or "")
        except (ValueError, json.JSONDecodeError) as exc:
            raise UserError(f"line {line_no}, column tags: {exc}") from None
        devices.append(Device(tenant, device_id, (row.get("site_id") or "").strip() or None,
                              (row.get("device_type") or "").strip() or None,
                              (row.get("name") or "").strip() or None, tags))
    return devices


def import_devices(conn: psycopg.Connection, devices: Sequence[Device]) -> list[IssuedToken]:
    """Create or update devices in one transaction; new devices get tokens (returned once)."""
    issued = []
    with conn.transaction():
        for tenant in sorted({d.tenant_id for d in devices}):
            _require_tenant(conn, tenant)
        for site in sorted({(d.tenant_id, d.site_id) for d in devices if d.site_id}):
            _require_site(conn, *site)
        for device in devices:
            token = upsert_device(conn, device, issue_token=True)
            if token:
                issued.append(token)
    return issued


def write_tokens_csv(tokens: Iterable[IssuedToken], path: Path) -> None:
    with path.open("w", newline="") as fh:
        path.chmod(0o600)  # tokens are secrets
        writer = csv.writer(fh)
        writer.writerow(["tenant_id", "device_id", "token"])
        for t in tokens:
            writer.writerow([t.tenant_id, t.device_id, t.token])
