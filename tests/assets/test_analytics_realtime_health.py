from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg

from assets import lake
from assets.health import device_health
from assets.realtime import query_rollup
from assets.rollups import rollup_partition, sql_rollup
from tests.assets.analytics_fixtures import T0, seed


def test_query_rollup_joins_lake_and_live_tail_without_gaps(analytics_url, tmp_path):
    seed(analytics_url, hours=3)
    start, end = T0, T0 + timedelta(hours=3)
    with psycopg.connect(analytics_url) as conn:
        for i in range(2):  # hours 0 and 1 materialized, hour 2 is the tail
            h = T0 + timedelta(hours=i)
            lake.export_hour(conn, tmp_path, h)
            rollup_partition(tmp_path, "1m", h, h + lake.HOUR)
        # late data into hour 1 after its export: that hour must come from the store
        conn.execute("insert into telemetry values (%s, 'acme', 'pump-00000', 'temp_c', 1000.0)",
                     (T0 + timedelta(hours=1, seconds=1),))
        conn.execute("update ingest_hours set rows = rows + 1, last_ingested_at = now() "
                     "where tenant_id = 'acme' and hour = %s", (T0 + timedelta(hours=1),))
        conn.commit()
        got = query_rollup(conn, tmp_path, "acme", None, None, start, end, "1m")
        expected = sql_rollup(conn, "acme", start, end, "1m")
        assert got.height == expected.height == 3 * 60 * 15  # 3 devices × 5 metrics × 180 minutes
        keys = ["device_id", "metric", "bucket"]
        assert got.sort(keys).select(expected.columns).equals(expected.sort(keys))
        by_hour = got.group_by(pl.col("bucket").dt.truncate("1h")).agg(pl.col("source").unique())
        sources = {r[0]: r[1] for r in by_hour.rows()}
        assert sources[T0] == ["lake"] and sources[T0 + timedelta(hours=1)] == ["live"]
        assert sources[T0 + timedelta(hours=2)] == ["live"]
        one = query_rollup(conn, tmp_path, "acme", ["pump-00000"], ["temp_c"], start, end, "1h")
        assert one["count"].to_list() == [60, 61, 60] and one["max"][1] == 1000.0


def _ts(minutes):
    return datetime(2026, 1, 5, tzinfo=UTC) + timedelta(minutes=minutes)


def test_device_health_intervals_completeness_and_thresholds():
    day0, day1 = _ts(0), _ts(24 * 60)
    # d1 reports every minute but goes silent 10:00–10:30; d2 every 5 minutes all day; d3 never
    t1 = [m for m in range(24 * 60) if not (600 < m < 630)]
    t2 = list(range(0, 24 * 60, 5))
    readings = pl.DataFrame({"tenant_id": "t", "device_id": ["d1"] * len(t1) + ["d2"] * len(t2),
                             "time": [_ts(m) for m in t1 + t2]}).with_columns(pl.col("time").dt.cast_time_unit("us"))
    devices = pl.DataFrame({"tenant_id": ["t", "t", "t"], "device_id": ["d1", "d2", "d3"],
                            "device_type": ["pump", "meter", "pump"]})
    h = device_health(readings, devices, day0, day1)
    off = h.intervals.filter(pl.col("status") == "offline")
    assert off.filter(pl.col("device_id") == "d1").select("start", "end").rows() == [(_ts(600), _ts(630))]
    assert off.filter(pl.col("device_id") == "d2").height == 0  # 5-min gaps are its normal rhythm
    assert off.filter(pl.col("device_id") == "d3")["duration_s"].to_list() == [86400.0]
    total = h.intervals.group_by("device_id").agg(pl.col("duration_s").sum()).sort("device_id")
    assert total["duration_s"].to_list() == [86400.0] * 3  # online + offline tile the day
    comp = h.completeness.filter(pl.col("device_id") == "d1", pl.col("hour") == _ts(600))
    assert comp["received"][0] == 31 and abs(comp["completeness"][0] - 31 / 60) < 1e-9
    assert h.completeness.filter(pl.col("device_id") == "d2")["completeness"].min() == 1.0
    assert h.devices.filter(pl.col("device_id") == "d1")["last_seen"][0] == _ts(24 * 60 - 1)
    # a per-type threshold of 40 min makes d1's 30-minute gap normal
    h2 = device_health(readings, devices, day0, day1, thresholds_s={"pump": 2400})
    assert h2.intervals.filter((pl.col("device_id") == "d1") & (pl.col("status") == "offline")).height == 0
