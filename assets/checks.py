"""Data-quality checks on the lake export and the rollups (pure: connection + lake dir).

Each returns ``CheckOutcome``s; the Dagster assets turn them into ``AssetCheckResult``s and
``record_check_results`` persists them (table ``asset_check_results``) for the app.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq

from assets.lake import HOUR, TELEMETRY_SCHEMA, hour_files
from assets.rollups import ROLLUP_SCHEMA, existing_rollup_files, lake_files_for


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    blocking: bool = False
    metadata: dict = field(default_factory=dict)


EXPORT_CHECKS = {"rows_match_store": True, "no_duplicates": False, "no_null_or_nan": False, "schema": False}
ROLLUP_CHECKS = {"counts_match_lake": True, "no_duplicates": False, "no_null_or_nan": False, "schema": False}


def _duckdb():
    import duckdb

    con = duckdb.connect()
    con.execute("set enable_progress_bar = false")
    return con


def _file_rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def _schema_ok(paths: Sequence[Path], expected) -> tuple[bool, list[str]]:
    bad = [str(p) for p in paths if not pq.read_schema(p).remove_metadata().equals(expected.remove_metadata())]
    return not bad, bad


def export_checks(conn, lake_dir: Path, hour: datetime) -> list[CheckOutcome]:
    files = hour_files(lake_dir, hour)
    store = dict(conn.execute(
        "select tenant_id, count(*) from telemetry where time >= %s and time < %s group by 1",
        (hour, hour + HOUR)).fetchall())
    retained = {r[0] for r in conn.execute(
        "select tenant_id from lake_exports where hour = %s and retained_at is not null", (hour,))}
    conn.commit()
    lake = {t: _file_rows(p) for t, p in files.items()}
    mismatched = {t: {"store": store.get(t, 0), "lake": lake.get(t, 0)}
                  for t in set(store) | set(lake)
                  if t not in retained and store.get(t, 0) != lake.get(t, 0)}
    out = [CheckOutcome("rows_match_store", not mismatched, True, {
        "store_rows": sum(store.values()), "lake_rows": sum(lake.values()),
        "mismatched_tenants": json.dumps(mismatched, sort_keys=True)})]
    out += _frame_checks(list(files.values()), ["tenant_id", "device_id", "metric", "time"],
                         ["time", "tenant_id", "device_id", "metric", "value"], "value", TELEMETRY_SCHEMA)
    return out


def rollup_checks(lake_dir: Path, grain: str, start: datetime, end: datetime) -> list[CheckOutcome]:
    outputs = list(existing_rollup_files(lake_dir, grain, start).values())
    inputs = [p for paths in lake_files_for(lake_dir, start, end).values() for p in paths]
    lake_rows = sum(_file_rows(p) for p in inputs)
    counted = 0
    if outputs:
        with _duckdb() as con:
            counted = con.execute("select coalesce(sum(count), 0) from read_parquet($f)",
                                  {"f": [str(p) for p in outputs]}).fetchone()[0]
    out = [CheckOutcome("counts_match_lake", counted == lake_rows, True,
                        {"lake_rows": lake_rows, "rollup_count_sum": int(counted), "files": len(outputs)})]
    out += _frame_checks(outputs, ["tenant_id", "device_id", "metric", "bucket"],
                         ["tenant_id", "device_id", "metric", "bucket", "count", "min", "max", "mean", "p95", "last"],
                         "mean", ROLLUP_SCHEMA)
    return out


def _frame_checks(paths: list[Path], key: list[str], columns: list[str], value_col: str, schema) -> list[CheckOutcome]:
    schema_ok, bad = _schema_ok(paths, schema)
    if not paths:
        return [CheckOutcome("no_duplicates", True, metadata={"rows": 0, "duplicates": 0}),
                CheckOutcome("no_null_or_nan", True, metadata={"rows": 0, "nulls": 0, "nan": 0}),
                CheckOutcome("schema", True, metadata={"files": 0})]
    nulls = " + ".join(f"count(*) filter (where {c} is null)" for c in columns)
    with _duckdb() as con:
        rows, distinct, null_count, nan = con.execute(
            f"""with v as (select * from read_parquet($f, union_by_name = true))
                select count(*), (select count(*) from (select distinct {", ".join(key)} from v)),
                       {nulls}, count(*) filter (where isnan({value_col})) from v""",
            {"f": [str(p) for p in paths]}).fetchone()
    rate = lambda n: round(n / rows, 6) if rows else 0.0  # noqa: E731
    return [
        CheckOutcome("no_duplicates", rows == distinct, metadata={"rows": rows, "duplicates": rows - distinct}),
        CheckOutcome("no_null_or_nan", null_count == 0 and nan == 0,
                     metadata={"rows": rows, "nulls": null_count, "nan": nan, "null_rate": rate(null_count),
                               "nan_rate": rate(nan)}),
        CheckOutcome("schema", schema_ok, metadata={"files": len(paths), "bad_files": json.dumps(bad),
                                                    "expected": str(schema.remove_metadata())}),
    ]


def record_check_results(conn, asset_key: str, partition_key: str | None, outcomes: Sequence[CheckOutcome],
                         run_id: str | None = None) -> None:
    from psycopg.types.json import Jsonb

    with conn.transaction():
        for o in outcomes:
            conn.execute(
                """insert into asset_check_results (asset_key, check_name, partition_key, passed, severity,
                                                     metadata, run_id) values (%s, %s, %s, %s, %s, %s, %s)""",
                (asset_key, o.name, partition_key, o.passed, "ERROR" if o.blocking else "WARN",
                 Jsonb(o.metadata), run_id),
            )


def latest_check_results(conn, asset_key: str | None = None) -> list[dict]:
    """Newest result per (asset, check, partition) — for the app."""
    cur = conn.execute(
        """select distinct on (asset_key, check_name, partition_key)
                  asset_key, check_name, partition_key, passed, severity, metadata, checked_at
           from asset_check_results where %s::text is null or asset_key = %s
           order by asset_key, check_name, partition_key, checked_at desc""", (asset_key, asset_key))
    cols = [d.name for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]
