from datetime import UTC, datetime, timedelta

import psycopg
import pyarrow.parquet as pq

from assets import lake
from assets.checks import export_checks
from tests.assets.analytics_fixtures import T0, seed


def _db_count(conn, hour, tenant=None):
    return conn.execute("select count(*) from telemetry where time >= %s and time < %s "
                        "and (%s::text is null or tenant_id = %s)",
                        (hour, hour + lake.HOUR, tenant, tenant)).fetchone()[0]


def test_export_layout_sorting_and_idempotent_rematerialization(analytics_url, tmp_path):
    seed(analytics_url, hours=1)
    with psycopg.connect(analytics_url) as conn:
        first = lake.export_hour(conn, tmp_path, T0)
        files = lake.hour_files(tmp_path, T0)
        assert set(files) == {"acme", "beta"}
        assert files["acme"] == tmp_path / "telemetry/tenant=acme/date=2026-01-05/hour=10.parquet"
        snapshot = {t: pq.read_table(p) for t, p in files.items()}
        assert first.rows == _db_count(conn, T0) > 0
        for tenant, table in snapshot.items():
            assert pq.ParquetFile(files[tenant]).metadata.row_group(0).column(0).compression == "ZSTD"
            assert table.equals(table.sort_by(lake.SORT_KEYS))
            assert table.num_rows == _db_count(conn, T0, tenant)
        second = lake.export_hour(conn, tmp_path, T0)
        assert second.rows == first.rows
        for tenant, path in lake.hour_files(tmp_path, T0).items():
            assert pq.read_table(path).equals(snapshot[tenant])  # same data → same rows, no duplicates
        assert not list(tmp_path.rglob("*.tmp"))
        rows = conn.execute("select tenant_id, rows, db_rows from lake_exports order by 1").fetchall()
        assert [(t, r) for t, r, _ in rows] == [(t, snapshot[t].num_rows) for t in ("acme", "beta")]
        assert all(c.passed for c in export_checks(conn, tmp_path, T0))


def test_export_removes_file_of_tenant_without_rows(analytics_url, tmp_path):
    seed(analytics_url, hours=1)
    with psycopg.connect(analytics_url) as conn:
        lake.export_hour(conn, tmp_path, T0)
        conn.execute("delete from telemetry where tenant_id = 'beta'")
        conn.commit()
        lake.export_hour(conn, tmp_path, T0)
        assert set(lake.hour_files(tmp_path, T0)) == {"acme"}


def test_reconciliation_check_fails_when_lake_and_store_differ(analytics_url, tmp_path):
    seed(analytics_url, hours=1)
    with psycopg.connect(analytics_url) as conn:
        lake.export_hour(conn, tmp_path, T0)
        conn.execute("delete from telemetry where ctid in (select ctid from telemetry where tenant_id = 'acme' "
                     "and time >= %s limit 3)", (T0,))
        conn.commit()
        checks = {c.name: c for c in export_checks(conn, tmp_path, T0)}
        assert not checks["rows_match_store"].passed and checks["rows_match_store"].blocking
        assert '"acme"' in checks["rows_match_store"].metadata["mismatched_tenants"]
        assert checks["no_duplicates"].passed and checks["schema"].passed


def test_stale_hours_are_exactly_the_late_ones(analytics_url, tmp_path):
    seed(analytics_url, hours=3)
    now = T0 + timedelta(hours=5)
    with psycopg.connect(analytics_url) as conn:
        assert [h for h, _ in lake.stale_hours(conn, before=now)] == [T0 + timedelta(hours=i) for i in range(3)]
        for i in range(3):
            lake.export_hour(conn, tmp_path, T0 + timedelta(hours=i))
        assert lake.stale_hours(conn, before=now) == []
        # a late reading for hour 1, through the same ledger upsert the ingest writer does
        late = T0 + timedelta(hours=1, minutes=7, seconds=30)
        conn.execute("insert into telemetry values (%s, 'acme', 'pump-00000', 'temp_c', 1.5)", (late,))
        conn.execute("""insert into ingest_hours as h values ('acme', %s, 1, now())
                        on conflict (tenant_id, hour) do update set rows = h.rows + 1,
                        last_ingested_at = excluded.last_ingested_at""", (T0 + timedelta(hours=1),))
        conn.commit()
        assert [h for h, _ in lake.stale_hours(conn, before=now)] == [T0 + timedelta(hours=1)]
        lake.export_hour(conn, tmp_path, T0 + timedelta(hours=1))
        assert lake.stale_hours(conn, before=now) == []
        # the current (unfinished) hour is not a partition yet
        assert lake.stale_hours(conn, before=T0 + timedelta(minutes=30)) == []


def test_retention_never_drops_unexported_or_mismatched_hours(analytics_any_url, tmp_path):
    seed(analytics_any_url, hours=4)
    hours = [T0 + timedelta(hours=i) for i in range(4)]
    with psycopg.connect(analytics_any_url) as conn:
        lake.export_hour(conn, tmp_path, hours[0])
        lake.export_hour(conn, tmp_path, hours[1])
        lake.export_hour(conn, tmp_path, hours[2])
        # hour 2: the store changed after the export without the ledger (count check catches it)
        conn.execute("delete from telemetry where ctid in (select ctid from telemetry where time >= %s "
                     "and time < %s and tenant_id = 'acme' limit 2)", (hours[2], hours[3]))
        conn.commit()
        before = {h: _db_count(conn, h) for h in hours}
        now = T0 + timedelta(days=30)
        dry = lake.apply_retention(conn, tmp_path, now=now, hot_days=7, dry_run=True)
        # per tenant-hour: beta's hour 2 still matches its export, acme's does not
        expected = {(t, h) for t in ("acme", "beta") for h in hours[:2]} | {("beta", hours[2])}
        assert set(dry.dropped_hours) == expected
        assert _db_count(conn, hours[0]) == before[hours[0]]  # dry run
        result = lake.apply_retention(conn, tmp_path, now=now, hot_days=7)
        assert set(result.dropped_hours) == expected
        reasons = {(t, h): r for t, h, r in result.kept_hours}
        assert reasons[("acme", hours[2])].startswith("row count mismatch")
        assert reasons[("acme", hours[3])] == "not exported"
        assert _db_count(conn, hours[0]) == 0 and _db_count(conn, hours[1]) == 0
        assert _db_count(conn, hours[2], "acme") == _db_count(conn, hours[2]) > 0
        assert _db_count(conn, hours[3]) == before[hours[3]]
        assert result.deleted_rows == before[hours[0]] + before[hours[1]] + before[hours[2]] - _db_count(conn, hours[2])
        # inside the hot window nothing is touched
        assert lake.apply_retention(conn, tmp_path, now=T0 + timedelta(days=1), hot_days=7).dropped_hours == []
        # retained hours stay in the lake; a late row for one merges instead of replacing the file
        rows0 = pq.read_table(lake.telemetry_path(tmp_path, "acme", hours[0])).num_rows
        conn.execute("insert into telemetry values (%s, 'acme', 'late-dev', 'x', 1.0)",
                     (hours[0] + timedelta(seconds=1),))
        conn.commit()
        lake.export_hour(conn, tmp_path, hours[0])
        assert pq.read_table(lake.telemetry_path(tmp_path, "acme", hours[0])).num_rows == rows0 + 1


def test_retention_drops_whole_timescale_chunks(analytics_url, tmp_path):
    start = datetime(2026, 1, 3, tzinfo=UTC)  # one full 1-day chunk
    seed(analytics_url, hours=24, devices=2, start=start)
    with psycopg.connect(analytics_url) as conn:
        for i in range(24):
            lake.export_hour(conn, tmp_path, start + timedelta(hours=i))
        result = lake.apply_retention(conn, tmp_path, now=start + timedelta(days=10), hot_days=7)
        assert len(result.dropped_chunks) == 1 and len(result.dropped_hours) == 48
        assert conn.execute("select count(*) from telemetry").fetchone()[0] == 0
