"""Measure lake bytes per row: simulator telemetry written exactly as the hourly export
writes it (assets.lake: TELEMETRY_SCHEMA, sorted by device/metric/time, zstd, one file per
tenant-hour). Used for the lake-growth column of docs/scaling.md.

    .venv/bin/python deploy/measure_lake.py --devices 2000 --interval 60 --interval 10  # jitter 0 and ±500 ms
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from assets.lake import TELEMETRY_SCHEMA, sort_for_lake, write_parquet_atomic
from pulse.simulator import make_fleet, series, time_grid


def tenant_hour_table(n_devices: int, interval_s: float, start: datetime, jitter_ms: float = 0.0) -> pa.Table:
    """One tenant-hour. ``jitter_ms``: real devices stamp readings with millisecond clocks
    that wander around the nominal interval; the simulator's grid is exact, which flatters
    the time column's delta encoding."""
    grid = time_grid(start, start + timedelta(hours=1), interval_s)
    rng = np.random.default_rng(7)
    times, devices, metrics, values = [], [], [], []
    for dev in make_fleet(n_devices, tenants=("acme",)):
        epoch = grid + np.round(rng.uniform(-jitter_ms, jitter_ms, len(grid))) / 1000.0 if jitter_ms else grid
        for metric in dev.metrics:
            v = series(dev, metric, epoch)
            times.append(np.round(epoch * 1_000_000).astype("int64"))
            values.append(v)
            devices.extend([dev.device_id] * len(epoch))
            metrics.extend([metric.name] * len(epoch))
    n = len(devices)
    table = pa.table({
        "time": pa.array(np.concatenate(times), pa.timestamp("us", tz="UTC")),
        "tenant_id": pa.array(["acme"] * n, pa.string()),
        "device_id": pa.array(devices, pa.string()),
        "metric": pa.array(metrics, pa.string()),
        "value": pa.array(np.concatenate(values), pa.float64()),
    }, schema=TELEMETRY_SCHEMA)
    return sort_for_lake(table)


def measure(n_devices: int, interval_s: float, out_dir: Path, jitter_ms: float = 0.0) -> dict:
    start = datetime(2026, 11, 28, 14, tzinfo=UTC)
    table = tenant_hour_table(n_devices, interval_s, start, jitter_ms)
    size = write_parquet_atomic(table, out_dir / f"i{int(interval_s)}-j{int(jitter_ms)}" / "hour=14.parquet")
    return {"devices": n_devices, "interval_s": interval_s, "jitter_ms": jitter_ms, "rows": table.num_rows,
            "bytes": size,
            "bytes_per_row": round(size / table.num_rows, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--interval", type=float, action="append", help="reporting interval in seconds (repeatable)")
    ap.add_argument("--jitter-ms", type=float, action="append",
                    help="uniform ± timestamp jitter in ms (repeatable; default 0 and 500)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for interval in args.interval or [60.0]:
            for jitter in args.jitter_ms or [0.0, 500.0]:
                print(json.dumps(measure(args.devices, interval, Path(tmp), jitter)))


if __name__ == "__main__":
    main()
