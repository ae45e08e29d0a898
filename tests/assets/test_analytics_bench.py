"""The analytics benchmark at toy size (its JSON shape, bare and Dagster outputs identical), and
the fast offline-interval rule (integer device codes, packed sort) against a plain-Python
reference of the rule."""

import statistics
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from assets.bench import generate_lake, rollups_bare_vs_dagster, run_analytics_bench
from assets.health import device_health


def test_bench_smoke_reports_throughput_overhead_scaling_and_sla(timescale_url):
    report = run_analytics_bench(rows=36_000, devices=100, scaling_base_rows=3_000, scaling_factors=(1, 4),
                                 batch_hours=1, sla_devices=20, sla_database_url=timescale_url)
    # 100 devices × 5 metrics × 60 minutes = 30,000 a full hour; the rest is a 12-minute hour
    assert report["rows"] == 36_000 and report["hours"] == 2
    assert report["rollup_rows_per_s"] > 0 and report["dagster_rows_per_s"] > 0
    assert report["dagster_overhead_ratio"] > 0 and report["dagster_runs"] == 2
    assert report["outputs_identical"] is True
    assert report["dagster_run_fixed_s"] > 0 and report["peak_rss_mb"] > 0
    assert [s["factor"] for s in report["scaling"]] == [1, 4]
    assert report["scaling"][1]["rows"] > report["scaling"][0]["rows"]
    assert all(s["peak_rss_mb"] > 0 for s in report["scaling"])
    # the monthly SLA report through its Dagster asset, against a scratch database
    assert report["sla_seconds"] > 0 and report["sla_bare_seconds"] > 0 and report["sla_bare_first_run_seconds"] > 0
    assert report["sla_devices"] == 20 and report["sla_report_status"] == "succeeded"
    assert report["sla_checks_passed"] is True
    assert {"sla-slabench-2026-10.html", "sla-slabench-2026-10.json"} <= set(report["sla_files"])
    assert report["sla_incidents"] > 0 and 0 < report["sla_availability_pct"] < 100


def test_bare_and_dagster_write_the_same_rollup_bytes(tmp_path):
    info = generate_lake(tmp_path, 3 * 6_000, devices=20)  # 3 hours
    out = rollups_bare_vs_dagster(tmp_path, info["hours"], batch_hours=2)
    assert out["dagster_runs"] == 2 and out["outputs_identical"] is True
    assert out["one_run_per_partition"]["partitions"] == 2
    assert len(list((tmp_path / "rollups" / "1m").rglob("*.parquet"))) == 3


def test_generate_lake_is_exact_and_sorted(tmp_path):
    import pyarrow.parquet as pq

    info = generate_lake(tmp_path, 7_000, devices=10, metrics=2)  # 1,200 an hour
    assert info == {"rows": 7_000, "hours": 6, "devices": 10, "metrics": 2}
    files = sorted((tmp_path / "telemetry").rglob("*.parquet"))
    assert sum(pq.read_metadata(f).num_rows for f in files) == 7_000
    last = pl.read_parquet(files[-1])
    assert last.equals(last.sort("device_id", "metric", "time")) and last.height == 1_000


W0 = datetime(2026, 3, 1, tzinfo=UTC)


def _random_fleet(seed: int):
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(25):
        step = int(rng.choice([30, 60, 300]))
        t = int(rng.integers(0, 3 * step))
        while t < 6 * 3600:
            rows.append((f"d{d:02d}", W0 + timedelta(seconds=t)))
            if rng.random() < 0.05:
                rows.append((f"d{d:02d}", W0 + timedelta(seconds=t)))  # a duplicate reading time
            t += step if rng.random() > 0.01 else int(rng.integers(step, 3600))  # now and then an outage
    rows += [("ghost", W0 + timedelta(minutes=m)) for m in (5, 6, 50)]  # reports, not registered
    readings = pl.DataFrame(rows, schema={"device_id": pl.String, "time": pl.Datetime("us", "UTC")}, orient="row")
    readings = readings.sample(fraction=1.0, shuffle=True, seed=seed)
    devices = pl.DataFrame({"device_id": [f"d{d:02d}" for d in range(27)],  # d25, d26: registered, silent
                            "site_id": "s1", "device_type": [("pump", "meter", None)[d % 3] for d in range(27)]})
    return readings, devices


def _reference_offline(readings, devices, start, end, thresholds_s=None, multiplier=3.0, expected_interval_s=None):
    """The offline rule of assets/health.py, one device at a time in plain Python."""
    thresholds_s, expected_interval_s = thresholds_s or {}, expected_interval_s or {}
    times: dict[str, set] = {}
    for device, t in readings.select("device_id", "time").iter_rows():
        if start <= t < end:
            times.setdefault(device, set()).add(t)
    types = {d: t or "" for d, t in devices.select("device_id", "device_type").iter_rows()}
    types.update({d: "" for d in times if d not in types})
    offline, intervals = [], {}
    for device, dtype in types.items():
        ts = sorted(times.get(device, ()))
        gaps = [(b - a).total_seconds() for a, b in zip(ts, ts[1:])]
        median = statistics.median(gaps) if gaps else None
        interval = expected_interval_s.get(dtype) or (median if median and median > 0 else 60.0)
        threshold = thresholds_s.get(dtype) or multiplier * interval
        intervals[device] = interval
        if not ts:
            offline.append((device, start, end))
            continue
        if (ts[0] - start).total_seconds() > threshold:
            offline.append((device, start, ts[0]))
        offline += [(device, a, b) for a, b in zip(ts, ts[1:]) if (b - a).total_seconds() > threshold]
        if (end - ts[-1]).total_seconds() > threshold:
            offline.append((device, ts[-1], end))
    return sorted(offline), intervals


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("options", [{}, {"thresholds_s": {"pump": 400.0}, "multiplier": 2.0},
                                     {"expected_interval_s": {"meter": 60.0}}])
def test_offline_intervals_equal_a_plain_reference(seed, options):
    readings, devices = _random_fleet(seed)
    start, end = W0 + timedelta(minutes=7), W0 + timedelta(hours=5, minutes=53)
    health = device_health(readings.with_columns(pl.lit("t").alias("tenant_id")),
                           devices.with_columns(pl.lit("t").alias("tenant_id")), start, end, **options)
    expected, intervals = _reference_offline(readings, devices, start, end, **options)
    got = health.intervals.filter(pl.col("status") == "offline").select("device_id", "start", "end")
    assert len(expected) > 5
    assert sorted(got.iter_rows()) == expected
    assert dict(health.devices.select("device_id", "interval_s").iter_rows()) == pytest.approx(intervals)
