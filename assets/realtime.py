"""Real-time rollup queries: materialized rollups + the not-yet-materialized tail.

Dashboards ask for a range; hours (days at the 1d grain) whose rollup file exists and is
current come from the lake, the rest (the last hour(s), hours with late data not yet
re-exported, a day still in progress) are aggregated on the fly by PostgreSQL with the
same definitions (``sql_rollup``) — so a chart never shows a gap between the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from assets.lake import HOUR
from assets.rollups import GRAINS, ROLLUP_SCHEMA, read_rollups, rollup_path, sql_rollup

DAY = timedelta(days=1)


def _periods(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    t = start.astimezone(UTC)
    t = t.replace(minute=0, second=0, microsecond=0)
    if step == DAY:
        t = t.replace(hour=0)
    out = []
    while t < end:
        out.append(t)
        t += step
    return out


def _current_periods(conn, tenant: str, periods: list[datetime], step: timedelta) -> set[datetime]:
    """Periods whose every ingested hour was exported after its last ingest (rollups current)."""
    if not periods:
        return set()
    rows = conn.execute(
        """select h.hour from ingest_hours h
           left join lake_exports e using (tenant_id, hour)
           where h.tenant_id = %s and h.hour >= %s and h.hour < %s
             and (e.exported_at is null or h.last_ingested_at >= e.exported_at
                  or e.ledger_rows is distinct from h.rows)""",
        (tenant, periods[0], periods[-1] + step),
    ).fetchall()
    stale = {r[0] for r in rows}
    return {p for p in periods if not any(p <= h < p + step for h in stale)}


def query_rollup(conn, lake_dir: Path, tenant: str, device_ids: Sequence[str] | None, metrics: Sequence[str] | None,
                 start: datetime, end: datetime, grain: str) -> pl.DataFrame:
    """Rollup rows (ROLLUP_SCHEMA + ``source``: 'lake' | 'live') with ``start <= bucket < end``."""
    if grain not in GRAINS:
        raise ValueError(f"unknown grain {grain!r}; expected one of {sorted(GRAINS)}")
    step = DAY if grain == "1d" else HOUR
    periods = _periods(start, end, step)
    current = _current_periods(conn, tenant, periods, step)
    lake_paths, live = [], []
    for p in periods:
        path = rollup_path(lake_dir, grain, tenant, p)
        if p in current and path.exists():
            lake_paths.append(path)
        else:
            live.append(p)
    parts = []
    if lake_paths:
        frame = read_rollups(lake_dir, grain, lake_paths)
        if device_ids is not None:
            frame = frame.filter(pl.col("device_id").is_in(list(device_ids)))
        if metrics is not None:
            frame = frame.filter(pl.col("metric").is_in(list(metrics)))
        parts.append(frame.with_columns(pl.lit("lake").alias("source")))
    # contiguous runs of live periods → one SQL query each
    runs: list[list[datetime]] = []
    for p in live:
        if runs and runs[-1][-1] + step == p:
            runs[-1].append(p)
        else:
            runs.append([p])
    for run in runs:
        # whole periods, so a partial bucket at either edge is never half-counted
        frame = sql_rollup(conn, tenant, run[0], run[-1] + step, grain,
                           device_ids=device_ids, metrics=metrics)
        parts.append(frame.with_columns(pl.lit("live").alias("source")))
    conn.commit()
    if not parts:
        return pl.from_arrow(ROLLUP_SCHEMA.empty_table()).with_columns(pl.lit("lake").alias("source"))
    out = pl.concat(parts, how="vertical_relaxed")
    lo = start.astimezone(UTC)
    return (out.filter((pl.col("bucket") >= lo) & (pl.col("bucket") < end.astimezone(UTC)))
            .sort(["device_id", "metric", "bucket"]))
