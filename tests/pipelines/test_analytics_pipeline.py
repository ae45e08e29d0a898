import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pyarrow.parquet as pq

from assets import lake
from assets.defs_health import device_health_daily
from assets.defs_lake import lake_export
from assets.defs_rollups import rollups_1d, rollups_1h, rollups_1m
from assets.rollups import rollup_path, sql_rollup
from pipelines.definitions import defs
from pipelines.resources import AnalyticsSettings, PulseDatabase, PulseLake
from pipelines.sensors import lake_export_late_data_sensor
from tests.assets.analytics_fixtures import T0, seed

REPO = Path(__file__).resolve().parents[2]


def _resources(url, lake_dir):
    return {"db": PulseDatabase(url=url), "lake": PulseLake(lake_dir=str(lake_dir)), "analytics": AnalyticsSettings()}


def test_materialize_export_rollups_and_health_in_process(analytics_url, tmp_path):
    seed(analytics_url, hours=2)
    res = _resources(analytics_url, tmp_path)
    with dg.instance_for_test() as instance:
        for key in ("2026-01-05-10:00", "2026-01-05-11:00"):
            result = dg.materialize([lake_export, rollups_1m, rollups_1h], partition_key=key,
                                    resources=res, instance=instance)
            assert result.success
            checks = result.get_asset_check_evaluations()
            assert len(checks) == 12 and all(c.passed for c in checks)
        # re-materializing is idempotent
        before = pq.read_table(lake.telemetry_path(tmp_path, "acme", T0))
        assert dg.materialize([lake_export], partition_key="2026-01-05-10:00", resources=res,
                              instance=instance).success
        assert pq.read_table(lake.telemetry_path(tmp_path, "acme", T0)).equals(before)
        day = dg.materialize([rollups_1d, device_health_daily], partition_key="2026-01-05", resources=res,
                             instance=instance)
        assert day.success
    with psycopg.connect(analytics_url) as conn:
        expected = sql_rollup(conn, "acme", T0, T0 + timedelta(hours=2), "1h")
        got = pq.read_table([rollup_path(tmp_path, "1h", "acme", T0 + timedelta(hours=i)) for i in range(2)][0])
        assert got.num_rows == expected.filter(expected["bucket"] == T0).height
        daily = pq.read_table(rollup_path(tmp_path, "1d", "acme", T0))
        assert sum(daily.column("count").to_pylist()) == conn.execute(
            "select count(*) from telemetry where tenant_id = 'acme'").fetchone()[0]
        persisted = conn.execute("select count(*), bool_and(passed) from asset_check_results").fetchone()
        assert persisted == (4 * 2 * 3 + 4 + 4, True)  # 2 hours × 3 assets, re-export, 1d
    assert (tmp_path / "health/intervals/tenant=acme/date=2026-01-05/day.parquet").exists()


def test_late_data_sensor_requests_exactly_the_touched_partitions(analytics_url, tmp_path):
    seed(analytics_url, hours=3)
    res = _resources(analytics_url, tmp_path)
    with psycopg.connect(analytics_url) as conn:
        for i in range(3):
            lake.export_hour(conn, tmp_path, T0 + timedelta(hours=i))
        for hour, minute in ((0, 3), (2, 59)):
            h = T0 + timedelta(hours=hour)
            conn.execute("insert into telemetry values (%s, 'beta', 'late-1', 'x', 1)", (h + timedelta(minutes=minute),))
            conn.execute("update ingest_hours set rows = rows + 1, last_ingested_at = now() "
                         "where tenant_id = 'beta' and hour = %s", (h,))
        conn.commit()
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources=res)
        requests = lake_export_late_data_sensor(ctx)
        assert sorted(r.partition_key for r in requests) == ["2026-01-05-10:00", "2026-01-05-12:00"]
        assert len({r.run_key for r in requests}) == 2
        with psycopg.connect(analytics_url) as conn:
            lake.export_hour(conn, tmp_path, T0)
        again = lake_export_late_data_sensor(dg.build_sensor_context(instance=instance, resources=res))
        assert [r.partition_key for r in again] == ["2026-01-05-12:00"]


def test_definitions_load_and_validate(tmp_path):
    repo = defs.get_repository_def()
    assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} >= {
        "lake_export", "rollups_1m", "rollups_1h", "rollups_1d", "device_health_daily", "hot_store_retention"}
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    proc = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w",
                           "workspace.yaml"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed validation" in proc.stdout + proc.stderr
