"""Telemetry lake: hot store (PostgreSQL/TimescaleDB) → Parquet, late data, retention.

Pure functions over a psycopg connection and a lake directory; the Dagster assets in
``assets/defs_lake.py`` are thin wrappers. Layout (hive style, one file per tenant-hour):

    <lake>/telemetry/tenant=<t>/date=<YYYY-MM-DD>/hour=<HH>.parquet

Files are zstd-compressed, sorted by (device_id, metric, time), and written atomically
(temp file in the same directory + ``os.replace``), so readers never see half a file and
re-exporting a partition replaces it — the same data gives the same rows, never duplicates.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql as pgsql
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

HOUR = timedelta(hours=1)
TELEMETRY_SCHEMA = pa.schema([
    ("time", pa.timestamp("us", tz="UTC")),
    ("tenant_id", pa.string()),
    ("device_id", pa.string()),
    ("metric", pa.string()),
    ("value", pa.float64()),
])
SORT_KEYS = [("device_id", "ascending"), ("metric", "ascending"), ("time", "ascending")]


# ------------------------------------------------------------------ paths


def hour_floor(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def telemetry_path(lake_dir: Path, tenant: str, hour: datetime) -> Path:
    hour = hour.astimezone(UTC)
    return Path(lake_dir) / "telemetry" / f"tenant={tenant}" / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}.parquet"


def hour_files(lake_dir: Path, hour: datetime, area: str = "telemetry") -> dict[str, Path]:
    """Existing files of one hour, by tenant."""
    hour = hour.astimezone(UTC)
    out = {}
    for path in sorted((Path(lake_dir) / area).glob(f"tenant=*/date={hour:%Y-%m-%d}/hour={hour:%H}.parquet")):
        out[path.parent.parent.name.removeprefix("tenant=")] = path
    return out


def write_parquet_atomic(table: pa.Table, path: Path) -> int:
    """Write ``table`` to ``path`` via a temp file in the same directory + os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=1_000_000)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path.stat().st_size


# ------------------------------------------------------------------ reading the hot store

_SELECT_HOUR = """select (extract(epoch from time) * 1000000)::bigint as time_us, tenant_id, device_id, metric, value
                  from telemetry where time >= {start} and time < {end}"""


def read_hour_csv(conn: psycopg.Connection, start: datetime, end: datetime) -> pa.Table:
    """Fast path: ``COPY (select …) TO STDOUT (format csv)`` parsed by pyarrow's C++ CSV reader.

    Measured against binary COPY parsed row by row in Python and a server-side cursor
    (see ``docs/analytics.md``), this is several times faster: the bytes never become
    Python objects. float8 text output is shortest-round-trip (PG 12+), so values are exact.
    """
    sql = pgsql.SQL("copy (" + _SELECT_HOUR + ") to stdout (format csv)").format(
        start=pgsql.Literal(start), end=pgsql.Literal(end))
    buf = io.BytesIO()
    with conn.cursor() as cur, cur.copy(sql) as copy:
        for block in copy:
            buf.write(block)
    return _csv_to_table(buf.getvalue())


def _csv_to_table(data: bytes) -> pa.Table:
    names = ["time_us", "tenant_id", "device_id", "metric", "value"]
    if not data:
        return TELEMETRY_SCHEMA.empty_table()
    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=names, block_size=16 << 20),
        convert_options=pacsv.ConvertOptions(column_types={
            "time_us": pa.int64(), "tenant_id": pa.string(), "device_id": pa.string(),
            "metric": pa.string(), "value": pa.float64()}),
    )
    times = table.column("time_us").cast(pa.timestamp("us", tz="UTC"))
    return pa.table([times, table["tenant_id"], table["device_id"], table["metric"], table["value"]],
                    schema=TELEMETRY_SCHEMA)


def read_hour_binary(conn: psycopg.Connection, start: datetime, end: datetime) -> pa.Table:
    """Alternative read path kept for the measurement: binary COPY, rows decoded by psycopg."""
    sql = pgsql.SQL("copy (select time, tenant_id, device_id, metric, value from telemetry "
                          "where time >= {s} and time < {e}) to stdout (format binary)").format(
        s=pgsql.Literal(start), e=pgsql.Literal(end))
    cols: list[list] = [[], [], [], [], []]
    with conn.cursor() as cur, cur.copy(sql) as copy:
        copy.set_types(["timestamptz", "text", "text", "text", "float8"])
        for row in copy.rows():
            for i, v in enumerate(row):
                cols[i].append(v)
    return pa.table(cols, schema=TELEMETRY_SCHEMA)


def read_hour_cursor(conn: psycopg.Connection, start: datetime, end: datetime) -> pa.Table:
    """Alternative read path kept for the measurement: server-side (named) cursor, fetchmany."""
    cols: list[list] = [[], [], [], [], []]
    with conn.cursor(name="lake_export", binary=True) as cur:
        cur.itersize = 50_000
        cur.execute("select time, tenant_id, device_id, metric, value from telemetry "
                    "where time >= %s and time < %s", (start, end))
        while batch := cur.fetchmany(50_000):
            for row in batch:
                for i, v in enumerate(row):
                    cols[i].append(v)
    return pa.table(cols, schema=TELEMETRY_SCHEMA)


def sort_for_lake(table: pa.Table) -> pa.Table:
    return table.sort_by(SORT_KEYS)


def split_by_tenant(table: pa.Table) -> dict[str, pa.Table]:
    if table.num_rows == 0:
        return {}
    out = {}
    tenants = table.column("tenant_id")
    for tenant in pc.unique(tenants).to_pylist():
        out[tenant] = table.filter(pc.equal(tenants, tenant))
    return out


# ------------------------------------------------------------------ export


@dataclass(frozen=True)
class TenantExport:
    tenant_id: str
    hour: datetime
    rows: int
    db_rows: int
    path: str  # relative to the lake dir
    bytes: int


@dataclass(frozen=True)
class HourExport:
    hour: datetime
    exported_at: datetime
    tenants: list[TenantExport]
    removed: list[str]  # tenants whose stale file was removed (no rows any more)

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tenants)


def export_hour(conn: psycopg.Connection, lake_dir: Path, hour: datetime) -> HourExport:
    """Export every tenant's telemetry rows of ``[hour, hour+1h)`` to the lake and record it.

    The read runs in one REPEATABLE READ snapshot that also reads the ingest ledger, so the
    recorded ``exported_at``/``ledger_rows`` describe exactly the data in the files: a batch
    that commits later changes the ledger and the late-data sensor re-exports the hour.
    Hours already moved out of the hot store (``retained_at``) are merged with their file
    instead of replaced, so late rows for an old hour never erase history.
    """
    lake_dir = Path(lake_dir)
    hour = hour_floor(hour)
    end = hour + HOUR
    conn.commit()  # start a fresh transaction with our isolation level
    with conn.transaction():
        conn.execute("set transaction isolation level repeatable read")
        exported_at = conn.execute("select now()").fetchone()[0]
        table = read_hour_csv(conn, hour, end)
        ledger = dict(conn.execute("select tenant_id, rows from ingest_hours where hour = %s", (hour,)).fetchall())
        retained = {r[0] for r in conn.execute(
            "select tenant_id from lake_exports where hour = %s and retained_at is not null", (hour,))}
    by_tenant = split_by_tenant(table)
    existing = hour_files(lake_dir, hour)
    results = []
    for tenant in sorted(set(by_tenant) | (retained & set(existing))):
        part = by_tenant.get(tenant, TELEMETRY_SCHEMA.empty_table())
        db_rows = part.num_rows
        if tenant in retained and tenant in existing:
            part = merge_rows(pq.read_table(existing[tenant]).cast(TELEMETRY_SCHEMA), part)
        part = sort_for_lake(part)
        path = telemetry_path(lake_dir, tenant, hour)
        size = write_parquet_atomic(part, path)
        results.append(TenantExport(tenant, hour, part.num_rows, db_rows, str(path.relative_to(lake_dir)), size))
    removed = []
    for tenant, path in existing.items():
        if tenant not in by_tenant and tenant not in retained:
            path.unlink()  # the hot store has no rows for it any more: keep lake == store
            removed.append(tenant)
    record_exports(conn, results, exported_at, ledger, removed, hour)
    return HourExport(hour, exported_at, results, removed)


def merge_rows(old: pa.Table, new: pa.Table) -> pa.Table:
    """Union of two row sets; for the same (tenant, device, metric, time) the new row wins."""
    import polars as pl

    both = pl.concat([pl.from_arrow(new), pl.from_arrow(old)])
    return both.unique(subset=["tenant_id", "device_id", "metric", "time"], keep="first",
                       maintain_order=True).to_arrow().cast(TELEMETRY_SCHEMA)


def record_exports(conn: psycopg.Connection, results: Sequence[TenantExport], exported_at: datetime,
                   ledger: dict[str, int], removed: Iterable[str], hour: datetime) -> None:
    with conn.transaction():
        for r in results:
            conn.execute(
                """insert into lake_exports (tenant_id, hour, rows, db_rows, ledger_rows, path, bytes, exported_at)
                   values (%s, %s, %s, %s, %s, %s, %s, %s)
                   on conflict (tenant_id, hour) do update set rows = excluded.rows, db_rows = excluded.db_rows,
                       ledger_rows = excluded.ledger_rows, path = excluded.path, bytes = excluded.bytes,
                       exported_at = excluded.exported_at""",
                (r.tenant_id, r.hour, r.rows, r.db_rows, ledger.get(r.tenant_id), r.path, r.bytes, exported_at),
            )
        removed = list(removed)
        if removed:
            conn.execute("delete from lake_exports where hour = %s and tenant_id = any(%s)", (hour, removed))
        # tenant-hours in the ledger without rows in the store: remember they were looked at
        for tenant, rows in ledger.items():
            if tenant not in {r.tenant_id for r in results}:
                conn.execute(
                    """insert into lake_exports (tenant_id, hour, rows, db_rows, ledger_rows, path, bytes, exported_at)
                       values (%s, %s, 0, 0, %s, '', 0, %s)
                       on conflict (tenant_id, hour) do update set rows = 0, db_rows = 0,
                           ledger_rows = excluded.ledger_rows, path = '', bytes = 0,
                           exported_at = excluded.exported_at""",
                    (tenant, hour, rows, exported_at),
                )


# ------------------------------------------------------------------ late data


def stale_hours(conn: psycopg.Connection, *, before: datetime,
                not_before: datetime | None = None) -> list[tuple[datetime, str]]:
    """Hours whose ingest ledger changed after their last export (or were never exported),
    oldest first, each with a fingerprint of the ledger state (for sensor run keys).

    ``before``: only hours that ended (the current hour is not a partition yet).
    A tenant-hour is stale when it has no export, when rows were ingested after the export's
    snapshot, or when the ledger's row count differs from what the snapshot saw (a batch that
    started before the snapshot but committed after it).
    """
    rows = conn.execute(
        """select h.hour, max(h.last_ingested_at), sum(h.rows) from ingest_hours h
           left join lake_exports e on e.tenant_id = h.tenant_id and e.hour = h.hour
           where h.hour + interval '1 hour' <= %s and h.hour >= coalesce(%s, '-infinity'::timestamptz)
             and (e.exported_at is null or h.last_ingested_at >= e.exported_at
                  or e.ledger_rows is distinct from h.rows)
           group by h.hour order by h.hour""",
        (before, not_before),
    ).fetchall()
    conn.commit()
    return [(r[0], f"{r[1].timestamp():.6f}:{r[2]}") for r in rows]


# ------------------------------------------------------------------ retention


@dataclass(frozen=True)
class RetentionResult:
    cutoff: datetime
    dropped_hours: list[tuple[str, datetime]]
    kept_hours: list[tuple[str, datetime, str]]  # (tenant, hour, reason)
    dropped_chunks: list[str]
    deleted_rows: int


def retention_plan(conn: psycopg.Connection, cutoff: datetime) -> tuple[list[tuple[str, datetime, int]],
                                                                      list[tuple[str, datetime, str]]]:
    """Tenant-hours older than ``cutoff`` split into (eligible, kept-with-reason).

    Eligible means: exported, not ingested into since the export snapshot, and the live row
    count in the store equals the rows read by that export — checked now, not trusted.
    """
    live = conn.execute(
        """select tenant_id, date_trunc('hour', time) as hour, count(*) from telemetry
           where time < %s group by 1, 2 order by 2, 1""", (cutoff,)).fetchall()
    exports = {(r[0], r[1]): r[2:] for r in conn.execute(
        """select e.tenant_id, e.hour, e.db_rows, e.exported_at, h.last_ingested_at, e.ledger_rows, h.rows
           from lake_exports e left join ingest_hours h using (tenant_id, hour)
           where e.hour < %s""", (cutoff,))}
    eligible, kept = [], []
    for tenant, hour, count in live:
        exp = exports.get((tenant, hour))
        if hour + HOUR > cutoff:
            kept.append((tenant, hour, "inside hot window"))
        elif exp is None:
            kept.append((tenant, hour, "not exported"))
        elif exp[0] != count:
            kept.append((tenant, hour, f"row count mismatch: store {count}, exported {exp[0]}"))
        elif exp[2] is not None and (exp[2] >= exp[1] or exp[3] != exp[4]):
            kept.append((tenant, hour, "ingested after export"))
        else:
            eligible.append((tenant, hour, count))
    return eligible, kept


def verify_lake_file(lake_dir: Path, tenant: str, hour: datetime, min_rows: int) -> bool:
    path = telemetry_path(lake_dir, tenant, hour)
    try:
        return pq.ParquetFile(path).metadata.num_rows >= min_rows
    except (FileNotFoundError, OSError):
        return False


def apply_retention(conn: psycopg.Connection, lake_dir: Path, *, now: datetime, hot_days: float = 7.0,
                    dry_run: bool = False) -> RetentionResult:
    """Remove hot-store rows older than the hot window, only for hours safely in the lake.

    TimescaleDB: chunks whose every tenant-hour is eligible are dropped with ``drop_chunks``
    (cheap metadata operation); eligible hours in other chunks are DELETEd. Plain PostgreSQL
    (the embedded store): DELETE per eligible tenant-hour.
    """
    from pulse.db import has_timescale

    cutoff = hour_floor(now - timedelta(days=hot_days))
    eligible, kept = retention_plan(conn, cutoff)
    # the file must be there with at least the rows the store holds (merged hours may hold more)
    checked = []
    for tenant, hour, count in eligible:
        if verify_lake_file(lake_dir, tenant, hour, count):
            checked.append((tenant, hour, count))
        else:
            kept.append((tenant, hour, "lake file missing or short"))
    eligible = checked
    if dry_run:
        return RetentionResult(cutoff, [(t, h) for t, h, _ in eligible], kept, [], 0)
    ok = {(t, h) for t, h, _ in eligible}
    bad_hours = {h for _, h, _ in kept}
    dropped_chunks: list[str] = []
    done: set[tuple[str, datetime]] = set()
    deleted = 0
    with conn.transaction():
        if has_timescale(conn):
            chunks = conn.execute(
                """select chunk_schema || '.' || chunk_name, range_start, range_end
                   from timescaledb_information.chunks
                   where hypertable_name = 'telemetry' and range_end <= %s order by range_start""",
                (cutoff,)).fetchall()
            for name, start, end in chunks:
                if any(start <= h < end for h in bad_hours):
                    continue
                conn.execute("select drop_chunks('telemetry', older_than => %s::timestamptz, "
                             "newer_than => %s::timestamptz)", (end, start))
                dropped_chunks.append(name)
                for key in ok:
                    if start <= key[1] < end:
                        done.add(key)
        for tenant, hour, count in eligible:
            if (tenant, hour) in done:
                deleted += count
                continue
            cur = conn.execute("delete from telemetry where tenant_id = %s and time >= %s and time < %s",
                               (tenant, hour, hour + HOUR))
            deleted += cur.rowcount
            done.add((tenant, hour))
        for tenant, hour in done:
            conn.execute("update lake_exports set retained_at = now() where tenant_id = %s and hour = %s",
                         (tenant, hour))
    return RetentionResult(cutoff, sorted(done, key=lambda k: (k[1], k[0])), kept, dropped_chunks, deleted)
