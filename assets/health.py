"""Device health: online/offline intervals from reporting gaps, last seen, completeness.

A device is offline while no reading arrives for longer than its threshold: a configured
value for its device type, else ``multiplier`` × its own median reporting interval. The
offline interval runs from the last reading before the gap to the next reading (or to the
end of the window). Completeness per hour = distinct reading times received / expected
(3600 s / the device's expected interval), capped at 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

DEFAULT_MULTIPLIER = 3.0
DEFAULT_INTERVAL_S = 60.0  # when a device sent too few readings to estimate its interval


@dataclass(frozen=True)
class HealthResult:
    intervals: pl.DataFrame     # tenant_id, device_id, status, start, end, duration_s
    completeness: pl.DataFrame  # tenant_id, device_id, hour, received, expected, completeness
    devices: pl.DataFrame       # tenant_id, device_id, device_type, last_seen, interval_s, threshold_s, offline_s


def device_health(readings: pl.DataFrame, devices: pl.DataFrame, start: datetime, end: datetime, *,
                  thresholds_s: Mapping[str, float] | None = None, multiplier: float = DEFAULT_MULTIPLIER,
                  expected_interval_s: Mapping[str, float] | None = None) -> HealthResult:
    """Health over [start, end).

    ``readings``: tenant_id, device_id, time (one row per reading; several metrics of one
    message collapse to one reading time). ``devices``: tenant_id, device_id, device_type —
    devices without readings are offline for the whole window.
    """
    thresholds_s = dict(thresholds_s or {})
    expected_interval_s = dict(expected_interval_s or {})
    times = (readings.select("tenant_id", "device_id", "time")
             .filter((pl.col("time") >= start) & (pl.col("time") < end))
             .unique().sort("tenant_id", "device_id", "time"))
    devs = devices.select("tenant_id", "device_id", pl.col("device_type").fill_null("")).unique(
        subset=["tenant_id", "device_id"])
    # devices that report but are not registered still get health rows
    seen = times.select("tenant_id", "device_id").unique()
    devs = pl.concat([devs, seen.join(devs, on=["tenant_id", "device_id"], how="anti")
                     .with_columns(pl.lit("").alias("device_type"))], how="vertical_relaxed")

    gaps = times.with_columns(
        (pl.col("time").diff().over("tenant_id", "device_id").dt.total_microseconds() / 1e6).alias("gap_s"))
    stats = gaps.group_by("tenant_id", "device_id").agg(
        pl.col("gap_s").median().alias("median_gap_s"), pl.col("time").max().alias("last_seen"),
        pl.col("time").min().alias("first_seen"))
    per_dev = devs.join(stats, on=["tenant_id", "device_id"], how="left")
    interval = []
    threshold = []
    for dtype, med in zip(per_dev["device_type"].to_list(), per_dev["median_gap_s"].to_list()):
        iv = expected_interval_s.get(dtype) or (med if med and med > 0 else DEFAULT_INTERVAL_S)
        interval.append(float(iv))
        threshold.append(float(thresholds_s.get(dtype) or multiplier * iv))
    per_dev = per_dev.with_columns(pl.Series("interval_s", interval), pl.Series("threshold_s", threshold))

    # offline intervals: inner gaps above threshold, plus the window edges
    thr = per_dev.select("tenant_id", "device_id", "threshold_s")
    g = gaps.join(thr, on=["tenant_id", "device_id"]).with_columns(
        pl.col("time").shift(1).over("tenant_id", "device_id").alias("prev"))
    inner = g.filter(pl.col("gap_s") > pl.col("threshold_s")).select(
        "tenant_id", "device_id", pl.col("prev").alias("start"), pl.col("time").alias("end"))
    edges = per_dev.with_columns(pl.lit(start).cast(pl.Datetime("us", "UTC")).alias("w0"),
                                 pl.lit(end).cast(pl.Datetime("us", "UTC")).alias("w1"))
    head = edges.filter(pl.col("first_seen").is_null()
                        | ((pl.col("first_seen") - pl.col("w0")).dt.total_microseconds() / 1e6 > pl.col("threshold_s"))
                        ).select("tenant_id", "device_id", pl.col("w0").alias("start"),
                                 pl.col("first_seen").fill_null(pl.col("w1")).alias("end"))
    tail = edges.filter(pl.col("last_seen").is_not_null()
                        & ((pl.col("w1") - pl.col("last_seen")).dt.total_microseconds() / 1e6 > pl.col("threshold_s"))
                        ).select("tenant_id", "device_id", pl.col("last_seen").alias("start"), pl.col("w1").alias("end"))
    ts = pl.Datetime("us", "UTC")
    offline = pl.concat([f.with_columns(pl.col("start").cast(ts), pl.col("end").cast(ts)) for f in (head, inner, tail)])
    offline = offline.with_columns(pl.lit("offline").alias("status")).sort("tenant_id", "device_id", "start")
    online = _complement(offline, per_dev, start, end)
    intervals = (pl.concat([offline, online], how="vertical_relaxed")
                 .with_columns((pl.col("end") - pl.col("start")).dt.total_microseconds().truediv(1e6).alias("duration_s"))
                 .filter(pl.col("duration_s") > 0)
                 .select("tenant_id", "device_id", "status", "start", "end", "duration_s")
                 .sort("tenant_id", "device_id", "start"))
    offline_s = intervals.filter(pl.col("status") == "offline").group_by("tenant_id", "device_id").agg(
        pl.col("duration_s").sum().alias("offline_s"))
    per_dev = per_dev.join(offline_s, on=["tenant_id", "device_id"], how="left").with_columns(
        pl.col("offline_s").fill_null(0.0)).select(
        "tenant_id", "device_id", "device_type", "last_seen", "interval_s", "threshold_s", "offline_s").sort(
        "tenant_id", "device_id")

    # completeness per hour, every device × every hour of the window (zeros included)
    hours = pl.datetime_range(start, end - timedelta(microseconds=1), "1h", time_zone="UTC", eager=True).alias("hour")
    grid = per_dev.select("tenant_id", "device_id", "interval_s").join(hours.to_frame(), how="cross")
    received = times.group_by("tenant_id", "device_id", pl.col("time").dt.truncate("1h").alias("hour")).agg(
        pl.len().alias("received"))
    completeness = (grid.join(received, on=["tenant_id", "device_id", "hour"], how="left")
                    .with_columns(pl.col("received").fill_null(0).cast(pl.Int64),
                                  (3600.0 / pl.col("interval_s")).alias("expected"))
                    .with_columns((pl.col("received") / pl.col("expected")).clip(upper_bound=1.0).alias("completeness"))
                    .select("tenant_id", "device_id", "hour", "received", "expected", "completeness")
                    .sort("tenant_id", "device_id", "hour"))
    return HealthResult(intervals, completeness, per_dev)


def _complement(offline: pl.DataFrame, per_dev: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    """Online intervals = the window minus the offline intervals, per device."""
    rows = []
    by_dev: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}
    for t, d, s, e in offline.select("tenant_id", "device_id", "start", "end").iter_rows():
        by_dev.setdefault((t, d), []).append((s, e))
    w0 = pl.Series([start]).cast(pl.Datetime("us", "UTC"))[0]
    w1 = pl.Series([end]).cast(pl.Datetime("us", "UTC"))[0]
    for t, d in per_dev.select("tenant_id", "device_id").iter_rows():
        cursor = w0
        for s, e in sorted(by_dev.get((t, d), [])):
            if s > cursor:
                rows.append((t, d, cursor, s))
            cursor = max(cursor, e)
        if cursor < w1:
            rows.append((t, d, cursor, w1))
    schema = {"tenant_id": pl.String, "device_id": pl.String, "start": pl.Datetime("us", "UTC"),
              "end": pl.Datetime("us", "UTC")}
    return pl.DataFrame(rows, schema=schema, orient="row").with_columns(pl.lit("online").alias("status"))


def health_partition(conn, lake_dir, start: datetime, end: datetime, **options) -> dict[str, int]:
    """Device health of [start, end) for every tenant, from the lake's telemetry files and the
    device registry; written to health/<table>/tenant=<t>/date=<D>/day.parquet. Returns
    offline intervals per tenant."""
    from pathlib import Path

    from assets.lake import write_parquet_atomic
    from assets.rollups import lake_files_for

    lake_dir = Path(lake_dir)
    registry = conn.execute("select tenant_id, device_id, device_type from devices where status = 'active'").fetchall()
    conn.commit()
    reg = pl.DataFrame(registry, schema={"tenant_id": pl.String, "device_id": pl.String, "device_type": pl.String},
                       orient="row")
    files = lake_files_for(lake_dir, start, end)
    out = {}
    for tenant in sorted(set(files) | set(reg["tenant_id"].to_list())):
        paths = files.get(tenant, [])
        readings = (pl.read_parquet(paths, columns=["tenant_id", "device_id", "time"]) if paths else
                    pl.DataFrame(schema={"tenant_id": pl.String, "device_id": pl.String,
                                         "time": pl.Datetime("us", "UTC")}))
        result = device_health(readings, reg.filter(pl.col("tenant_id") == tenant), start, end, **options)
        for name, frame in (("intervals", result.intervals), ("completeness", result.completeness),
                            ("devices", result.devices)):
            path = lake_dir / "health" / name / f"tenant={tenant}" / f"date={start:%Y-%m-%d}" / "day.parquet"
            write_parquet_atomic(frame.to_arrow(), path)
        out[tenant] = result.intervals.filter(pl.col("status") == "offline").height
    return out
