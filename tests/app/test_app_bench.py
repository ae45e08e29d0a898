"""`pulse bench app`: the dataset generators at a tiny size, the command's registration, and
the preloading server entry point (the browser timing itself runs in `pulse bench app`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg


def test_generated_lake_is_what_query_rollup_reads(tmp_path, pg_url):
    from app import bench
    from assets.realtime import query_rollup

    start = datetime(2026, 11, 1, tzinfo=UTC)
    info = bench.generate_lake(tmp_path, devices=4, metrics=2, start=start, days=2)
    assert info == {"rollup_1h_rows": 4 * 2 * 48, "rollup_1d_rows": 4 * 2 * 2, "rollup_files": 50}
    with psycopg.connect(pg_url) as conn:
        hourly = query_rollup(conn, tmp_path, bench.TENANT, ["dev-00001"], ["temp_c"], start, start + timedelta(days=2),
                              "1h")
        daily = query_rollup(conn, tmp_path, bench.TENANT, None, None, start, start + timedelta(days=2), "1d")
    assert hourly.height == 48 and set(hourly["source"]) == {"lake"}
    assert (hourly["min"] <= hourly["mean"]).all() and (hourly["mean"] <= hourly["max"]).all()
    assert daily.height == 4 * 2 * 2 and set(daily["count"]) == {1440}


def test_generated_database_feeds_the_pages(pg_url, monkeypatch):
    import streamlit as st

    from app import bench, queries

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    out = bench.generate_database(pg_url, devices=200, metrics=3, start=end - timedelta(days=2), end=end,
                                  raw_devices=2)
    assert out["devices"] == 200 and out["device_state"] == 198 and out["telemetry_rows"] == 2 * 3 * 1440
    monkeypatch.setenv("PULSE_DATABASE_URL", pg_url)
    st.cache_data.clear()
    kpis = queries.fleet_kpis()
    assert kpis["devices"] == 200 and kpis["never_seen"] == 2 and kpis["offline"] == 6
    assert queries.report_runs(bench.TENANT).height == 1
    assert queries.devices(bench.TENANT, metric_ranges=[("temp_c", -1e9, 1e9)]).height == 198
    frame, grain = queries.series(bench.TENANT, "dev-00000", ["temp_c"], end - timedelta(hours=20), end)
    assert grain == "raw" and 0 < frame.height <= queries.MAX_POINTS
    st.cache_data.clear()


def test_bench_database_name():
    from app.bench import bench_database_url

    assert bench_database_url("postgresql://u:p@h:5432/pulse") == "postgresql://u:p@h:5432/pulse_bench_app"
    assert bench_database_url("postgresql://h/db?sslmode=off") == "postgresql://h/db_bench_app?sslmode=off"


def test_bench_app_command_is_registered():
    from typer.testing import CliRunner

    from pulse.cli import app

    result = CliRunner().invoke(app, ["bench", "app", "--help"])
    assert result.exit_code == 0 and "--devices" in result.output and "--warm-runs" in result.output


def test_serve_preloads_and_reports_missing_modules():
    from app import serve

    assert serve.preload(("polars", "no_such_module_xyz")) == {
        "no_such_module_xyz": "ModuleNotFoundError: No module named 'no_such_module_xyz'"}
    assert pl.__name__ == "polars"
