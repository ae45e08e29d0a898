"""Analytics benchmark: rollup throughput over a generated lake, Dagster overhead, scaling, and
the monthly SLA report for a large fleet.

``run_analytics_bench(rows=10_000_000)`` → dict (the CLI exposes it as
``pulse bench analytics --json``). The rollup part runs against a generated Parquet lake (no
database needed): hourly files like the lake export writes, for ``devices`` × ``metrics``
series at one reading per ``interval_s``. With ``cache_dir`` the generated lakes are kept and
reused by later runs with the same parameters.

Bare vs Dagster: both paths call the same ``rollup_partition`` per hourly partition and write
the same files; the Dagster path materializes ``rollups_1m`` in-process, a batch of hourly
partitions per run (the asset's backfill policy). They alternate batch by batch (order swapped
every batch) so the load of a shared machine hits both alike, and the output bytes of the two
paths are compared.

The SLA part needs PostgreSQL (``sla_database_url``): a scratch database is created, migrated,
filled with one tenant's devices, sites and a month of alerts, and dropped afterwards; the
month's readings are a generated lake.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from assets.lake import HOUR, TELEMETRY_SCHEMA, telemetry_path, write_parquet_atomic

BENCH_START = datetime(2026, 1, 5, tzinfo=UTC)
LAKE_VERSION = 2  # bump when the generated data changes: cached lakes of other versions are not reused


def _hour_table(tenant: str, dev_idx: np.ndarray, dev_names: np.ndarray, metric_idx: np.ndarray,
                met_names: np.ndarray, times_us: np.ndarray, values: np.ndarray) -> pa.Table:
    """One hourly lake file's rows (already sorted by device, metric, time) as TELEMETRY_SCHEMA."""
    n = len(times_us)
    dev = pa.DictionaryArray.from_arrays(pa.array(dev_idx, pa.int32()), pa.array(dev_names, pa.string()))
    met = pa.DictionaryArray.from_arrays(pa.array(metric_idx, pa.int32()), pa.array(met_names, pa.string()))
    ten = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([tenant], pa.string()))
    times = pa.array(times_us, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    return pa.table([times, ten.cast(pa.string()), dev.cast(pa.string()), met.cast(pa.string()), pa.array(values)],
                    schema=TELEMETRY_SCHEMA)


def generate_lake(lake_dir: Path, rows: int, *, devices: int = 10_000, metrics: int = 5, interval_s: int = 60,
                  tenant: str = "bench", start: datetime = BENCH_START, seed: int = 1) -> dict:
    """Write ``rows`` telemetry rows (rounded down to whole readings of every series) as hourly
    lake files: full hours, then one partial hour for the rest. Returns {rows, hours, ...}."""
    rng = np.random.default_rng(seed)
    per_hour = max(1, 3600 // interval_s)  # readings per series and hour
    series = devices * metrics
    if series * per_hour > rows:  # fewer rows than one full hour: shrink the fleet
        devices = max(1, rows // (metrics * per_hour))
        series = devices * metrics
    readings = max(1, rows // series)  # per series, over all hours
    dev_names = np.array([f"dev-{i:05d}" for i in range(devices)], dtype=object)
    met_names = np.array([f"m{j}" for j in range(metrics)], dtype=object)
    total, hours = 0, 0
    while total < series * readings:
        k = min(per_hour, readings - hours * per_hour)  # readings per series in this hour
        n = series * k
        t0 = int((start + hours * HOUR).timestamp() * 1_000_000)
        times = t0 + np.tile(np.arange(k, dtype=np.int64) * interval_s * 1_000_000, series)
        table = _hour_table(tenant, np.repeat(np.arange(devices, dtype=np.int32), metrics * k), dev_names,
                            np.tile(np.repeat(np.arange(metrics, dtype=np.int32), k), devices), met_names, times,
                            np.round(rng.normal(50.0, 10.0, n), 3))
        write_parquet_atomic(table, telemetry_path(lake_dir, tenant, start + hours * HOUR))
        total += n
        hours += 1
    return {"rows": total, "hours": hours, "devices": devices, "metrics": metrics}


@contextmanager
def bench_lake(kind: str, params: dict, generate, cache_dir: Path | None = None):
    """A generated lake: reused from ``cache_dir`` when one with the same ``params`` was made
    before (its manifest is written last, so a half-written lake is never reused), else made
    there; without a cache dir, made in a temporary directory that is removed afterwards.
    Yields (lake_dir, info, generate_s or None when reused)."""
    key = hashlib.sha1(json.dumps({**params, "v": LAKE_VERSION}, sort_keys=True).encode()).hexdigest()[:12]
    lake = Path(cache_dir) / f"{kind}-{key}" if cache_dir else Path(tempfile.mkdtemp(prefix=f"pulse-{kind}-"))
    manifest = lake / "manifest.json"
    try:
        if cache_dir and manifest.exists():
            yield lake, json.loads(manifest.read_text()), None
            return
        shutil.rmtree(lake, ignore_errors=True)
        lake.mkdir(parents=True)
        started = time.perf_counter()
        info = generate(lake)
        seconds = time.perf_counter() - started
        manifest.write_text(json.dumps({**info, "params": params}))
        yield lake, info, round(seconds, 3)
    finally:
        if not cache_dir:
            shutil.rmtree(lake, ignore_errors=True)


def _rollup_hours(lake_dir: Path, hours: list[datetime], grain: str = "1m", engine: str = "polars") -> None:
    from assets.rollups import compute_rollups_duckdb, lake_files_for, rollup_partition

    for hour in hours:
        if engine == "polars":
            rollup_partition(lake_dir, grain, hour, hour + HOUR)
        else:
            for paths in lake_files_for(lake_dir, hour, hour + HOUR).values():
                compute_rollups_duckdb(paths, grain)


def _rollup_all(lake_dir: Path, hours: int, grain: str = "1m", engine: str = "polars") -> float:
    started = time.perf_counter()
    _rollup_hours(lake_dir, [BENCH_START + h * HOUR for h in range(hours)], grain, engine)
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


def _digest(lake_dir: Path, hours: list[datetime], grain: str = "1m") -> str:
    """sha256 over the bytes of the rollup files of ``hours`` (every tenant), in path order."""
    from assets.rollups import existing_rollup_files

    h = hashlib.sha256()
    for hour in hours:
        for tenant, path in sorted(existing_rollup_files(lake_dir, grain, hour).items()):
            h.update(tenant.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _materialize_rollups(instance, lake_dir: Path, hours: list[datetime]) -> None:
    """One in-process run of ``rollups_1m`` over the partition range ``hours`` (checks
    deselected: they read the outputs again and record to the database; not the query)."""
    import dagster as dg

    from assets.defs_rollups import rollups_1m
    from assets.partitions import HOUR_KEY_FORMAT
    from pipelines.resources import PulseDatabase, PulseLake  # lazy: the entry point may wire pipelines

    first, last = hours[0].strftime(HOUR_KEY_FORMAT), hours[-1].strftime(HOUR_KEY_FORMAT)
    tags = ({} if first == last else
            {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last})
    result = dg.materialize([rollups_1m], instance=instance, partition_key=first if first == last else None,
                            tags=tags, resources={"lake": PulseLake(lake_dir=str(lake_dir)), "db": PulseDatabase()},
                            selection=dg.AssetSelection.assets(rollups_1m).without_checks())
    assert result.success


def rollups_bare_vs_dagster(lake_dir: Path, hours: int, *, batch_hours: int = 8,
                            per_partition_batch: bool = True) -> dict:
    """Rollup of every hour of the lake, bare and through Dagster, batch by batch alternating.

    Also measured: Dagster's fixed cost of one run (an hour without lake files: no work) and,
    with ``per_partition_batch``, the first batch again as one run per partition (what
    materializing hour by hour costs) against the bare time of that batch."""
    import dagster as dg

    all_hours = [BENCH_START + h * HOUR for h in range(hours)]
    batches = [all_hours[i:i + batch_hours] for i in range(0, hours, batch_hours)]
    bare_s = dagster_s = 0.0
    identical = True
    with dg.instance_for_test() as instance:
        # warm-up: imports, Polars' thread pool, the instance's storage — paid once per process
        _rollup_hours(lake_dir, all_hours[:1])
        _materialize_rollups(instance, lake_dir, all_hours[:1])
        empty = [BENCH_START - 24 * HOUR]  # no lake files: the run does no work
        fixed = min(_timed(lambda: _materialize_rollups(instance, lake_dir, empty)) for _ in range(3))
        for i, batch in enumerate(batches):
            steps = [("bare", lambda b=batch: _rollup_hours(lake_dir, b)),
                     ("dagster", lambda b=batch: _materialize_rollups(instance, lake_dir, b))]
            digests = {}
            for name, fn in (steps if i % 2 == 0 else steps[::-1]):
                seconds = _timed(fn)
                digests[name] = _digest(lake_dir, batch)
                if name == "bare":
                    bare_s += seconds
                else:
                    dagster_s += seconds
            identical &= digests["bare"] == digests["dagster"]
        out = {"rollup_1m_s": round(bare_s, 3), "dagster_materialize_s": round(dagster_s, 3),
               "dagster_overhead_ratio": round(dagster_s / bare_s, 3), "dagster_runs": len(batches),
               "dagster_partitions_per_run": batch_hours, "dagster_run_fixed_s": round(fixed, 3),
               "outputs_identical": identical}
        if per_partition_batch and len(batches[0]) > 1:
            # the first batch again, one run per partition, alternating with the bare call hour by hour
            times = {"bare": 0.0, "dagster": 0.0}
            for i, hour in enumerate(batches[0]):
                steps = [("bare", lambda h=hour: _rollup_hours(lake_dir, [h])),
                         ("dagster", lambda h=hour: _materialize_rollups(instance, lake_dir, [h]))]
                for name, fn in (steps if i % 2 == 0 else steps[::-1]):
                    times[name] += _timed(fn)
            out["one_run_per_partition"] = {
                "partitions": len(batches[0]), "bare_s": round(times["bare"], 3),
                "materialize_s": round(times["dagster"], 3),
                "dagster_overhead_ratio": round(times["dagster"] / times["bare"], 3)}
    return out


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


# ------------------------------------------------------------------ the monthly SLA report


SLA_TENANT = "slabench"


def generate_sla_month(lake_dir: Path, *, devices: int = 10_000, period: str = "2026-10",
                       time_zone: str = "Europe/Berlin", interval_s: int = 300, metrics: int = 1,
                       outage_share: float = 0.05, silent_devices: int | None = None, seed: int = 7) -> dict:
    """A month of one tenant's readings as hourly lake files (plus the look-back hour before it):
    every device reports every ``interval_s``; ``outage_share`` of the devices have one to three
    outages (10 min … 2 days, readings removed), ``silent_devices`` send nothing at all."""
    from assets.sla import LOOKBACK, parse_period

    rng = np.random.default_rng(seed)
    silent_devices = devices // 1000 if silent_devices is None else silent_devices
    p = parse_period(period, time_zone)
    start, end = p.start - LOOKBACK, p.end
    per_hour = 3600 // interval_s
    dev_names = np.array([f"dev-{i:05d}" for i in range(devices)], dtype=object)
    met_names = np.array(["status", "temp_c", "rssi", "battery_v", "uptime_s"][:metrics], dtype=object)
    # outages as [start, end) µs per device
    hit = rng.choice(devices - silent_devices, int(outage_share * devices), replace=False) + silent_devices
    outages = []
    for d in hit:
        for _ in range(int(rng.integers(1, 4))):
            length = float(np.exp(rng.uniform(np.log(600), np.log(2 * 86400))))
            s = p.start.timestamp() + rng.uniform(0, p.seconds - length)
            outages.append((int(d), int(s * 1e6), int((s + length) * 1e6)))
    jitter = rng.integers(0, interval_s * 1_000_000 // 2, devices)  # each device's phase in its interval
    hour, total, files = start, 0, 0
    while hour < end:
        t0 = int(hour.timestamp() * 1_000_000)
        dev = np.repeat(np.arange(devices, dtype=np.int32), per_hour)
        times = t0 + np.tile(np.arange(per_hour, dtype=np.int64) * interval_s * 1_000_000, devices) + jitter[dev]
        keep = dev >= silent_devices
        for d, s, e in outages:
            if s < t0 + 3_600_000_000 and e > t0:
                rows = slice(d * per_hour, (d + 1) * per_hour)
                keep[rows] &= ~((times[rows] >= s) & (times[rows] < e))
        dev, times = dev[keep], times[keep]
        n = len(times) * metrics
        table = _hour_table(SLA_TENANT, np.repeat(dev, metrics), dev_names,
                            np.tile(np.arange(metrics, dtype=np.int32), len(times)), met_names,
                            np.repeat(times, metrics), np.round(rng.normal(20.0, 2.0, n), 2))
        write_parquet_atomic(table, telemetry_path(lake_dir, SLA_TENANT, hour))
        total += n
        files += 1
        hour += HOUR
    return {"rows": total, "readings": total // metrics, "hours": files, "devices": devices,
            "outages": len(outages), "silent_devices": silent_devices, "interval_s": interval_s, "metrics": metrics}


def _seed_sla_db(conn, devices: int, period_start: datetime, period_end: datetime, *, time_zone: str,
                 sites: int, alerts: int, report_dir: Path, seed: int = 7) -> None:
    """Tenant, sites, devices, report settings (files to ``report_dir``, no subscribers) and
    ``alerts`` alerts over the period with their firing/ack/resolve events."""
    from psycopg.types.json import Jsonb

    rng = np.random.default_rng(seed)
    conn.execute("insert into tenants (tenant_id, name, time_zone) values (%s, 'SLA bench', %s)",
                 (SLA_TENANT, time_zone))
    with conn.cursor().copy("copy sites (tenant_id, site_id, name) from stdin") as cp:
        for s in range(sites):
            cp.write_row((SLA_TENANT, f"site-{s:03d}", f"Site {s}"))
    with conn.cursor().copy("copy devices (tenant_id, device_id, site_id, device_type) from stdin") as cp:
        for d in range(devices):
            cp.write_row((SLA_TENANT, f"dev-{d:05d}", f"site-{d % sites:03d}", ("pump", "meter", "gateway")[d % 3]))
    conn.execute("insert into report_settings (tenant_id, settings) values (%s, %s)",
                 (SLA_TENANT, Jsonb({"folder": str(report_dir), "formats": ["csv", "json", "html"]})))
    span = (period_end - period_start).total_seconds()
    severities = np.array(["critical", "warning", "info"])
    with conn.cursor().copy("""copy alerts (alert_id, fingerprint, tenant_id, rule_id, subject, device_id, site_id,
                                            severity, state, started_at, last_seen, acknowledged_at, acknowledged_by,
                                            resolved_at, resolved_by) from stdin""") as cp:
        events = []
        for a in range(alerts):
            d = int(rng.integers(0, devices))
            fired = period_start + timedelta(seconds=float(rng.uniform(0, span - 7200)))
            acked = fired + timedelta(seconds=float(rng.exponential(600))) if rng.random() < 0.8 else None
            resolved = fired + timedelta(seconds=float(rng.exponential(3600)) + 60)
            aid, who = f"bench-{a:06d}", f"user-{int(rng.integers(0, 20))}"
            cp.write_row((aid, f"{SLA_TENANT}/r{a % 50}/dev-{d:05d}/{a}", SLA_TENANT, f"rule-{a % 50}",
                          f"dev-{d:05d}", f"dev-{d:05d}", f"site-{d % sites:03d}", str(rng.choice(severities)),
                          "resolved", fired, resolved, acked, who if acked else None, resolved, "engine"))
            events.append((aid, fired - timedelta(seconds=60), None, "pending", "transition", "engine"))
            events.append((aid, fired, "pending", "firing", "transition", "engine"))
            if acked and acked < resolved:
                events.append((aid, acked, "firing", "acknowledged", "ack", who))
            events.append((aid, resolved, "acknowledged" if acked and acked < resolved else "firing", "resolved",
                           "transition", "engine"))
    with conn.cursor().copy("copy alert_events (alert_id, at, from_state, to_state, action, actor) from stdin") as cp:
        for e in events:
            cp.write_row(e)
    conn.commit()


@contextmanager
def _scratch_database(admin_url: str):
    """A new, migrated database next to ``admin_url``'s; dropped on exit."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    from pulse import db

    name = f"pulse_slabench_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'drop database if exists "{name}" with (force)')
        admin.execute(f'create database "{name}"')
    url = make_conninfo(admin_url, dbname=name)
    try:
        db.migrate(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{name}" with (force)')


def sla_bench(database_url: str, *, devices: int = 10_000, period: str = "2026-10", time_zone: str = "Europe/Berlin",
              interval_s: int = 300, metrics: int = 1, sites: int = 200, alerts: int | None = None,
              cache_dir: Path | None = None) -> dict:
    """Monthly SLA report of one tenant with ``devices`` devices.

    ``sla_bare_seconds``: ``build_sla_report`` — the loaders (lake readings, devices, alerts and
    their events) and the computation, nothing written. ``sla_seconds``: the ``sla_report_monthly``
    asset materialized in-process for the month: the same report plus the CSV/JSON/HTML files,
    the ``report_runs`` record and the report checks (delivery off: no subscribers)."""
    import dagster as dg
    import psycopg

    from assets.defs_sla import sla_report_monthly
    from assets.sla import build_sla_report, parse_period
    from pipelines.resources import AnalyticsSettings, PulseDatabase, PulseLake

    alerts = 2 * devices if alerts is None else alerts
    params = {"devices": devices, "period": period, "time_zone": time_zone, "interval_s": interval_s,
              "metrics": metrics}
    p = parse_period(period, time_zone)
    out_dir = Path(tempfile.mkdtemp(prefix="pulse-sla-reports-"))
    try:
        with (bench_lake("sla", params, lambda d: generate_sla_month(d, **params), cache_dir) as (lake, info, gen_s),
              _scratch_database(database_url) as url):
            with psycopg.connect(url) as conn:
                _seed_sla_db(conn, devices, p.start, p.end, time_zone=time_zone, sites=sites, alerts=alerts,
                             report_dir=out_dir)
            for path in (lake / "telemetry").rglob("*.parquet"):  # every timing with the lake in page cache
                path.read_bytes()

            def bare_run():
                with psycopg.connect(url) as conn:
                    return build_sla_report(conn, SLA_TENANT, period, lake_dir=lake)

            # bare, Dagster, bare again, so that drift of a shared machine shows: both bare times
            # are reported (``sla_bare_seconds`` is the one after the Dagster run)
            started = time.perf_counter()
            report = bare_run()
            bare_first = time.perf_counter() - started
            with dg.instance_for_test() as instance:
                started = time.perf_counter()
                result = dg.materialize(
                    [sla_report_monthly], partition_key=f"{period}-01", instance=instance,
                    resources={"db": PulseDatabase(url=url), "lake": PulseLake(lake_dir=str(lake)),
                               "analytics": AnalyticsSettings()},
                    run_config={"ops": {"sla_report_monthly": {"config": {"tenants": [SLA_TENANT], "deliver": False}}}})
                wrapped = time.perf_counter() - started
                assert result.success
                checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
            bare = _timed(bare_run)
            with psycopg.connect(url) as conn:
                status = conn.execute("select status from report_runs where tenant_id = %s", (SLA_TENANT,)).fetchone()
            summary = report.summary()
            return {
                "sla_seconds": round(wrapped, 3), "sla_bare_seconds": round(bare, 3),
                "sla_bare_first_run_seconds": round(bare_first, 3),
                "sla_devices": summary["devices"], "sla_period": period, "sla_time_zone": time_zone,
                "sla_readings": info["readings"], "sla_lake_rows": info["rows"], "sla_interval_s": interval_s,
                "sla_lake_hours": info["hours"], "sla_generate_s": gen_s, "sla_alerts": alerts,
                "sla_availability_pct": summary["availability_pct"], "sla_incidents": summary["incidents"],
                "sla_report_status": status[0] if status else None, "sla_checks_passed": all(checks.values()),
                "sla_files": sorted(f.name for f in (out_dir / SLA_TENANT).iterdir()),
                "sla_peak_rss_mb": round(_peak_rss_kb() / 1024, 1),
            }
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


# ------------------------------------------------------------------ the whole benchmark


def run_analytics_bench(rows: int = 10_000_000, *, devices: int = 10_000, metrics: int = 5,
                        scaling_base_rows: int | None = None, scaling_factors=(1, 4, 16),
                        compare: bool = False, overhead: bool = True, batch_hours: int = 8,
                        cache_dir: Path | None = None, sla: bool = True, sla_devices: int = 10_000,
                        sla_database_url: str | None = None, sla_options: dict | None = None) -> dict:
    """Rollup rows/s over a generated lake of ``rows`` rows (1m grain, per hourly partition,
    as the asset computes it), bare and through Dagster, a scaling table, and the monthly SLA
    report (skipped with a reason when no database is reachable)."""
    params = {"rows": rows, "devices": devices, "metrics": metrics}
    with bench_lake("rollups", params, lambda d: generate_lake(d, rows, devices=devices, metrics=metrics),
                    cache_dir) as (lake, info, gen_s):
        shutil.rmtree(lake / "rollups", ignore_errors=True)  # outputs of an earlier run over a cached lake
        report = {
            "rows": info["rows"], "devices": info["devices"], "metrics": metrics, "hours": info["hours"],
            "generate_s": gen_s, "lake_cached": gen_s is None, "engine": "polars", "cpu_count": os.cpu_count(),
        }
        if overhead:
            report.update(rollups_bare_vs_dagster(lake, info["hours"], batch_hours=batch_hours))
        else:
            report["rollup_1m_s"] = round(_rollup_all(lake, info["hours"]), 3)
        report["rollup_rows_per_s"] = round(info["rows"] / report["rollup_1m_s"])
        if overhead:
            report["dagster_rows_per_s"] = round(info["rows"] / report["dagster_materialize_s"])
        report["peak_rss_mb"] = round(_peak_rss_kb() / 1024, 1)
        shutil.rmtree(lake / "rollups", ignore_errors=True)
    base = scaling_base_rows or max(rows // 16, 1000)
    report["scaling"] = scaling(base, scaling_factors, devices=min(devices, 1000))
    if compare:
        report["engines"] = compare_engines(min(rows, 5_000_000), devices=devices)
    if sla:
        report.update(_sla_or_reason(sla_database_url, sla_devices, cache_dir, sla_options or {}))
    return report


def _sla_or_reason(url: str | None, devices: int, cache_dir: Path | None, options: dict) -> dict:
    import psycopg

    if url is None:
        from pulse.db import database_url

        url = os.environ.get("PULSE_DATABASE_URL") and database_url()
    if not url:
        return {"sla_seconds": None, "sla_skipped": "no database: set PULSE_DATABASE_URL or --sla-database-url"}
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        return {"sla_seconds": None, "sla_skipped": f"database unreachable: {str(exc).strip().splitlines()[0]}"}
    return sla_bench(url, devices=devices, cache_dir=cache_dir, **options)
