"""In-memory device directory for authorising telemetry without a database round trip.

Loaded whole at start, refreshed incrementally (``updated_at``) in the background, and
consulted on a miss (with a short negative cache so a flood from an unknown device does
not become a flood of queries). Auto-registration for trusted tenants happens here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

import psycopg
import structlog

from pulse import registry

log = structlog.get_logger("pulse.ingest.directory")

NEGATIVE_TTL_S = 5.0


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    tenant_id: str
    device_id: str
    status: str
    site_id: str | None
    device_type: str | None
    tags: dict
    token_hash: bytes | None


_SELECT = """select d.tenant_id, d.device_id, d.status, d.site_id, d.device_type, d.tags, d.token_hash, d.updated_at
             from devices d"""


class DeviceDirectory:
    def __init__(self, url: str, *, refresh_s: float = 5.0):
        self.url = url
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._devices: dict[tuple[str, str], DeviceEntry] = {}
        self._by_token: dict[bytes, DeviceEntry] = {}
        self._auto_tenants: set[str] = set()
        self._tenants: set[str] = set()
        self._negative: dict[object, float] = {}
        self._high_water: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reload()

    # -- database
    def _db(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.url, autocommit=True)
        return self._conn

    def _add(self, row) -> None:
        entry = DeviceEntry(*row[:7])
        old = self._devices.get((entry.tenant_id, entry.device_id))
        if old is not None and old.token_hash is not None and old.token_hash != entry.token_hash:
            self._by_token.pop(old.token_hash, None)  # a rotated token stops working at once
        self._devices[(entry.tenant_id, entry.device_id)] = entry
        if entry.token_hash is not None:
            self._by_token[entry.token_hash] = entry
        if self._high_water is None or row[7] > self._high_water:
            self._high_water = row[7]

    def reload(self) -> None:
        with self._lock:
            conn = self._db()
            rows = conn.execute(_SELECT).fetchall()
            tenants = conn.execute("select tenant_id, auto_register from tenants").fetchall()
            self._devices.clear()
            self._by_token.clear()
            self._high_water = None
            for row in rows:
                self._add(row)
            self._tenants = {t for t, _ in tenants}
            self._auto_tenants = {t for t, auto in tenants if auto}
            self._negative.clear()

    def refresh(self) -> None:
        """Pick up devices changed since the last load (new, disabled, rotated tokens)."""
        with self._lock:
            conn = self._db()
            rows = conn.execute(_SELECT + " where d.updated_at >= %s", (self._high_water or datetime.min,)).fetchall()
            for row in rows:
                self._add(row)
            tenants = conn.execute("select tenant_id, auto_register from tenants").fetchall()
            self._tenants = {t for t, _ in tenants}
            self._auto_tenants = {t for t, auto in tenants if auto}

    def start(self) -> None:
        def loop():
            while not self._stop.wait(self.refresh_s):
                try:
                    self.refresh()
                except psycopg.Error as exc:  # the database may be restarting; try again later
                    log.warning("directory refresh failed", error=str(exc).splitlines()[0] if str(exc) else "")
                    with self._lock:
                        if self._conn is not None:
                            self._conn.close()

        self._thread = threading.Thread(target=loop, name="pulse-directory", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if self._conn is not None:
            self._conn.close()

    def _negatively_cached(self, key: object) -> bool:
        until = self._negative.get(key)
        return until is not None and until > time.monotonic()

    # -- lookups (hot path: a dict hit)
    def has_tenant(self, tenant_id: str) -> bool:
        return tenant_id in self._tenants

    def device(self, tenant_id: str, device_id: str) -> DeviceEntry | None:
        entry = self._devices.get((tenant_id, device_id))
        if entry is not None:
            return entry
        key = (tenant_id, device_id)
        if self._negatively_cached(key):
            return None
        try:
            with self._lock:
                conn = self._db()
                if tenant_id in self._auto_tenants:
                    registry.auto_register(conn, tenant_id, device_id)
                row = conn.execute(_SELECT + " where d.tenant_id = %s and d.device_id = %s",
                                   (tenant_id, device_id)).fetchone()
                if row is not None:
                    self._add(row)
                    return self._devices[key]
        except psycopg.Error as exc:
            log.warning("device lookup failed", tenant=tenant_id, device=device_id, error=str(exc)[:200])
            return None
        self._negative[key] = time.monotonic() + NEGATIVE_TTL_S
        return None

    def by_token(self, token: str) -> DeviceEntry | None:
        digest = registry.hash_token(token)
        entry = self._by_token.get(digest)
        if entry is not None:
            return entry
        if self._negatively_cached(digest):
            return None
        try:
            with self._lock:
                row = self._db().execute(_SELECT + " where d.token_hash = %s", (digest,)).fetchone()
                if row is not None:
                    self._add(row)
                    return self._by_token.get(digest)
        except psycopg.Error as exc:
            log.warning("token lookup failed", error=str(exc)[:200])
            return None
        self._negative[digest] = time.monotonic() + NEGATIVE_TTL_S
        return None
