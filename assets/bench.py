"""Analytics benchmark: rollup throughput over a generated lake, Dagster overhead, scaling.

``run_analytics_bench(rows=10_000_000)`` → dict (the CLI exposes it as
``pulse bench analytics --json``). Everything runs against a generated Parquet lake in a
temporary directory (no database needed): hourly files like the lake export writes, for
``devices`` × ``metrics`` series at one reading per ``interval_s``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from assets.lake import HOUR, TELEMETRY_SCHEMA, telemetry_path, write_parquet_atomic

BENCH_START = datetime(2026, 1, 5, tzinfo=UTC)


def generate_lake(lake_dir: Path, rows: int, *, devices: int = 10_000, metrics: int = 5, interval_s: int = 60,
                  tenant: str = "bench", start: datetime = BENCH_START, seed: int = 1) -> dict:
    """Write ~``rows`` telemetry rows as hourly lake files; returns {rows, hours, files}."""
    rng = np.random.default_rng(seed)
    per_hour_per_series = max(1, 3600 // interval_s)
    series = devices * metrics
    hours = max(1, round(rows / (series * per_hour_per_series)))
    if series * per_hour_per_series > rows:  # fewer rows than one full hour: shrink the fleet
        devices = max(1, rows // (metrics * per_hour_per_series))
        series = devices * metrics
        hours = 1
    dev_names = np.array([f"dev-{i:05d}" for i in range(devices)], dtype=object)
    met_names = np.array([f"m{j}" for j in range(metrics)], dtype=object)
    dev_col = pa.array(np.repeat(dev_names, metrics * per_hour_per_series)).dictionary_encode()
    met_col = pa.array(np.tile(np.repeat(met_names, per_hour_per_series), devices)).dictionary_encode()
    offsets = np.tile(np.arange(per_hour_per_series, dtype=np.int64) * interval_s * 1_000_000, series)
    total = 0
    for h in range(hours):
        hour = start + h * HOUR
        t0 = int(hour.timestamp() * 1_000_000)
        times = pa.array(t0 + offsets, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        values = pa.array(np.round(rng.normal(50.0, 10.0, len(offsets)), 3))
        n = len(offsets)
        table = pa.table([times, pa.array([tenant] * 1, pa.string()).take(np.zeros(n, dtype=np.int32)),
                          dev_col.cast(pa.string()), met_col.cast(pa.string()), values], schema=TELEMETRY_SCHEMA)
        write_parquet_atomic(table, telemetry_path(lake_dir, tenant, hour))
        total += n
    return {"rows": total, "hours": hours, "devices": devices, "metrics": metrics}


def _rollup_all(lake_dir: Path, hours: int, grain: str = "1m", engine: str = "polars") -> float:
    from assets.rollups import compute_rollups_duckdb, lake_files_for, rollup_partition

    started = time.perf_counter()
    for h in range(hours):
        hour = BENCH_START + h * HOUR
        if engine == "polars":
            rollup_partition(lake_dir, grain, hour, hour + HOUR)
        else:
            for paths in lake_files_for(lake_dir, hour, hour + HOUR).values():
                compute_rollups_duckdb(paths, grain)
    return time.perf_counter() - started


def compare_engines(rows: int = 5_000_000, *, devices: int = 10_000, grain: str = "1m") -> dict:
    """Polars vs DuckDB on the same single set of files (one query over all of them)."""
    import polars as pl

    from assets.rollups import compute_rollups, compute_rollups_duckdb

    tmp = Path(tempfile.mkdtemp(prefix="pulse-bench-"))
    try:
        info = generate_lake(tmp, rows, devices=devices)
        paths = sorted((tmp / "telemetry").rglob("*.parquet"))
        out = {"rows": info["rows"], "grain": grain}
        for name, fn in (("polars", lambda: compute_rollups(pl.read_parquet(paths), grain, dedupe=False)),
                         ("polars_dedupe", lambda: compute_rollups(pl.read_parquet(paths), grain, dedupe=True)),
                         ("duckdb", lambda: compute_rollups_duckdb(paths, grain))):
            best = min(_timed(fn) for _ in range(2))
            out[f"{name}_s"] = round(best, 3)
            out[f"{name}_rows_per_s"] = round(info["rows"] / best)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def dagster_overhead(lake_dir: Path, hour: datetime) -> dict:
    """dg.materialize of rollups_1m (in-process executor, checks deselected) vs the bare call."""
    import dagster as dg

    from assets.defs_rollups import rollups_1m
    from assets.rollups import rollup_partition
    from pipelines.resources import PulseDatabase, PulseLake  # lazy: the entry point may wire pipelines

    bare = min(_timed(lambda: rollup_partition(lake_dir, "1m", hour, hour + HOUR)) for _ in range(2))
    key = hour.strftime("%Y-%m-%d-%H:%M")
    with dg.instance_for_test() as instance:
        def run():
            result = dg.materialize([rollups_1m], partition_key=key, instance=instance,
                                    # checks deselected: the db resource is never connected
                                    resources={"lake": PulseLake(lake_dir=str(lake_dir)), "db": PulseDatabase()},
                                    selection=dg.AssetSelection.assets(rollups_1m).without_checks())
            assert result.success
        run()  # warm-up: first run pays one-time imports/instance setup
        wrapped = min(_timed(run) for _ in range(2))
    return {"bare_s": round(bare, 3), "materialize_s": round(wrapped, 3),
            "dagster_overhead_ratio": round(wrapped / bare, 3)}


def _peak_rss_kb() -> int:
    # VmHWM belongs to this process image; ru_maxrss would carry the forking parent's peak
    # across exec on Linux (measured: every child reported the parent's 1.4 GB)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child(rows: int, devices: int) -> None:
    """Run one scaling point in this (fresh) process and print its time and peak RSS."""
    tmp = Path(tempfile.mkdtemp(prefix="pulse-scale-"))
    try:
        info = generate_lake(tmp, rows, devices=devices)
        seconds = _rollup_all(tmp, info["hours"])
        peak_kb = _peak_rss_kb()
        print(json.dumps({"rows": info["rows"], "seconds": round(seconds, 3),
                          "rows_per_s": round(info["rows"] / seconds), "peak_rss_mb": round(peak_kb / 1024, 1)}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def scaling(base_rows: int, factors=(1, 4, 16), devices: int = 1000) -> list[dict]:
    out = []
    for factor in factors:
        code = f"from assets.bench import _child; _child({base_rows * factor}, {devices})"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent.parent)
        out.append({"factor": factor, **json.loads(proc.stdout.strip().splitlines()[-1])})
    return out


def run_analytics_bench(rows: int = 10_000_000, *, devices: int = 10_000, metrics: int = 5,
                        scaling_base_rows: int | None = None, scaling_factors=(1, 4, 16),
                        compare: bool = False, overhead: bool = True) -> dict:
    """Rollup rows/s over a generated lake of ``rows`` rows (1m grain, per hourly partition,
    as the asset computes it), Dagster's overhead ratio, and a scaling table."""
    tmp = Path(tempfile.mkdtemp(prefix="pulse-bench-"))
    try:
        started = time.perf_counter()
        info = generate_lake(tmp, rows, devices=devices, metrics=metrics)
        gen_s = time.perf_counter() - started
        seconds = _rollup_all(tmp, info["hours"])
        report = {
            "rows": info["rows"], "devices": info["devices"], "metrics": metrics, "hours": info["hours"],
            "generate_s": round(gen_s, 3), "rollup_1m_s": round(seconds, 3),
            "rollup_rows_per_s": round(info["rows"] / seconds), "engine": "polars",
            "cpu_count": os.cpu_count(),
        }
        if overhead:
            report.update(dagster_overhead(tmp, BENCH_START))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = scaling_base_rows or max(rows // 16, 1000)
    report["scaling"] = scaling(base, scaling_factors, devices=min(devices, 1000))
    if compare:
        report["engines"] = compare_engines(min(rows, 5_000_000), devices=devices)
    return report
