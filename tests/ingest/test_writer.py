from datetime import UTC, datetime, timedelta

import psycopg

from ingest.writer import QuarantineRow, Record, prepare_connection, write_batch
from pulse import registry
from pulse.envelope import Telemetry

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _setup(conn):
    registry.upsert_tenant(conn, "acme", "Acme")
    registry.upsert_device(conn, registry.Device("acme", "d1"))
    registry.upsert_device(conn, registry.Device("acme", "d2"))
    conn.commit()
    prepare_connection(conn)


def rec(device, minutes, **metrics):
    return Record("acme", Telemetry(device, T0 + timedelta(minutes=minutes), metrics))


def test_batch_is_idempotent_and_counts_duplicates(any_store_url):
    with psycopg.connect(any_store_url) as conn:
        _setup(conn)
        batch = [rec("d1", 0, a=1.0, b=2.0), rec("d1", 1, a=1.5), rec("d2", 0, a=9.0)]
        first = write_batch(conn, batch)
        assert (first.inserted, first.duplicates) == (4, 0)
        # a redelivery of the same messages plus one new one: only the new row is stored
        second = write_batch(conn, batch + [rec("d2", 5, a=10.0), rec("d2", 5, a=10.0)])
        assert (second.inserted, second.duplicates) == (1, 5)
        assert conn.execute("select count(*) from telemetry").fetchone()[0] == 5


def test_device_state_keeps_newest_values_despite_late_data(any_store_url):
    with psycopg.connect(any_store_url) as conn:
        _setup(conn)
        write_batch(conn, [rec("d1", 10, a=1.0, b=1.0)])
        write_batch(conn, [rec("d1", 5, a=99.0, c=3.0)])  # late reading
        last_seen, values, rows = conn.execute(
            "select last_seen, last_values, rows from device_state where device_id = 'd1'").fetchone()
        assert last_seen == T0 + timedelta(minutes=10)
        assert values == {"a": 1.0, "b": 1.0, "c": 3.0}  # late data fills gaps, never overwrites
        assert rows == 4
        hours = conn.execute("select hour, rows from ingest_hours").fetchall()
        assert hours == [(T0, 4)]


def test_quarantine_rows_are_committed_with_the_batch(any_store_url):
    with psycopg.connect(any_store_url) as conn:
        _setup(conn)
        q = QuarantineRow("mqtt", "bad_json", "JSON is malformed", b"\x00garbage", "acme", "d1", "pulse/v1/acme/d1/telemetry")
        result = write_batch(conn, [rec("d1", 0, a=1.0)], [q])
        assert result.quarantined == 1
        row = conn.execute("select reason, detail, payload, topic from quarantine").fetchone()
        assert row[0] == "bad_json" and bytes(row[2]) == b"\x00garbage" and row[3].endswith("/telemetry")
