from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assets.lake import TELEMETRY_SCHEMA
from assets.rollups import compute_rollups, compute_rollups_duckdb, sql_rollup

BASE = datetime(2026, 1, 5, 10, tzinfo=UTC)
STATS = ["count", "min", "max", "mean", "p95", "last"]
KEYS = ["tenant_id", "device_id", "metric", "bucket"]

row = st.tuples(
    st.sampled_from(["d1", "d2"]), st.sampled_from(["m1", "m2"]),
    # seconds across ~2 days: several minutes/hours/days, late rows come in random order
    st.integers(min_value=0, max_value=2 * 86400 + 5000),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
)


def _frame(rows):
    return pl.DataFrame(
        {"tenant_id": ["t"] * len(rows), "device_id": [r[0] for r in rows], "metric": [r[1] for r in rows],
         "time": [BASE + timedelta(seconds=r[2]) for r in rows], "value": [r[3] for r in rows]},
        schema={"tenant_id": pl.String, "device_id": pl.String, "metric": pl.String,
                "time": pl.Datetime("us", "UTC"), "value": pl.Float64})


def assert_same(a: pl.DataFrame, b: pl.DataFrame):
    a, b = a.sort(KEYS), b.sort(KEYS)
    assert a.select(KEYS).to_dicts() == b.select(KEYS).to_dicts()
    assert a["count"].to_list() == b["count"].to_list()
    for col in ["min", "max", "last"]:
        assert a[col].to_list() == b[col].to_list(), col
    for col in ["mean", "p95"]:
        for x, y in zip(a[col].to_list(), b[col].to_list()):
            assert x == pytest.approx(y, rel=1e-9, abs=1e-6), col


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, min_size=1, max_size=60), dup_idx=st.lists(st.integers(0, 59), max_size=10))
def test_rollups_equal_sql_aggregate(analytics_url, tmp_path, rows, dup_idx):
    # duplicate-timestamp rows (different values), inserted like the ingest path: first wins
    dups = [(r[0], r[1], r[2], r[3] + 1.0) for i, r in enumerate(rows) if i in set(dup_idx)]
    all_rows = rows + dups
    frame = _frame(all_rows)
    with psycopg.connect(analytics_url) as conn:
        conn.execute("truncate telemetry")
        with conn.cursor() as cur:
            cur.executemany("insert into telemetry values (%s, %s, %s, %s, %s) on conflict do nothing",
                            [(t, tn, d, m, v) for tn, d, m, t, v in frame.select(
                                "tenant_id", "device_id", "metric", "time", "value").rows()
                             for t in [t]])
        conn.commit()
        stored = frame.unique(subset=["tenant_id", "device_id", "metric", "time"], keep="first", maintain_order=True)
        path = tmp_path / "x.parquet"
        pq.write_table(stored.select("time", "tenant_id", "device_id", "metric", "value").to_arrow().cast(
            TELEMETRY_SCHEMA), path)
        for grain in ("1m", "1h", "1d"):
            expected = sql_rollup(conn, "t", BASE - timedelta(days=1), BASE + timedelta(days=4), grain)
            assert expected["count"].sum() == stored.height
            assert_same(compute_rollups(frame, grain), expected)  # deduplicates itself
            assert_same(compute_rollups(stored, grain, dedupe=False), expected)
            assert_same(compute_rollups_duckdb([path], grain), expected)


def test_duplicates_count_once_first_value_wins():
    t = BASE + timedelta(seconds=5)
    frame = _frame([("d1", "m1", 5, 1.0), ("d1", "m1", 5, 99.0), ("d1", "m1", 65, 3.0), ("d1", "m1", 10, 2.0)])
    out = compute_rollups(frame, "1h")
    assert out.select(STATS).row(0) == (3, 1.0, 3.0, 2.0, pytest.approx(2.9), 3.0)
    minute = compute_rollups(frame, "1m").filter(pl.col("bucket") == BASE)
    assert minute["count"][0] == 2 and minute["max"][0] == 2.0 and minute["last"][0] == 2.0
    assert t == BASE + timedelta(seconds=5)
