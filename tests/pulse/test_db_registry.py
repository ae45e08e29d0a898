import psycopg
import pytest

from pulse import db, registry
from pulse.errors import UserError


def test_migrations_are_idempotent_on_both_stores(any_store_url):
    assert db.migrate(any_store_url) == []  # the fixture already migrated
    status = db.schema_status(any_store_url)
    assert status["pending"] == [] and status["applied"] == [m.version for m in db.load_migrations()]


def test_timescale_store_uses_a_hypertable(pg_url):
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "select count(*) from timescaledb_information.hypertables where hypertable_name = 'telemetry'"
        ).fetchone()
        assert row[0] == 1


def test_embedded_store_uses_brin_without_timescale(embedded_url):
    with psycopg.connect(embedded_url) as conn:
        assert not db.has_timescale(conn)
        indexes = {r[0] for r in conn.execute("select indexname from pg_indexes where tablename = 'telemetry'")}
        assert {"telemetry_series_time", "telemetry_time_brin"} <= indexes


def _tenant(conn, tenant="acme", auto=False):
    registry.upsert_tenant(conn, tenant, tenant.title(), "Europe/Berlin", auto)
    registry.upsert_site(conn, tenant, "plant-1", "Plant 1", None, 52.5, 13.4)


def test_add_rotate_and_list_devices(any_store_url):
    with psycopg.connect(any_store_url) as conn:
        _tenant(conn)
        issued = registry.add_device(conn, registry.Device("acme", "pump-1", "plant-1", "pump", tags={"fw": "1.2"}))
        assert issued.token.startswith("pt_") and len(issued.token) > 40
        stored = conn.execute("select token_hash from devices where device_id = 'pump-1'").fetchone()[0]
        assert bytes(stored) == registry.hash_token(issued.token)  # only the hash is stored
        rotated = registry.rotate_token(conn, "acme", "pump-1")
        assert rotated.token != issued.token
        stored = conn.execute("select token_hash from devices where device_id = 'pump-1'").fetchone()[0]
        assert bytes(stored) == registry.hash_token(rotated.token)
        rows = registry.list_devices(conn, tenant_id="acme", tags={"fw": "1.2"})
        assert [r["device_id"] for r in rows] == ["pump-1"]
        assert registry.list_devices(conn, tenant_id="acme", tags={"fw": "9"}) == []
        with pytest.raises(UserError, match="already exists"):
            registry.add_device(conn, registry.Device("acme", "pump-1"))
        with pytest.raises(UserError, match="does not exist"):
            registry.add_device(conn, registry.Device("nope", "x"))
        with pytest.raises(UserError, match="site 'nowhere'"):
            registry.add_device(conn, registry.Device("acme", "x", "nowhere"))
        with pytest.raises(UserError, match="not valid"):
            registry.add_device(conn, registry.Device("acme", "bad/id"))


def test_csv_import_creates_updates_and_reports_lines(pg_url):
    text = "device_id,site_id,device_type,tags\nm-1,plant-1,meter,fw=1;zone=a\nm-2,,meter,{\"fw\": \"2\"}\n"
    with psycopg.connect(pg_url) as conn:
        _tenant(conn)
        devices = registry.read_device_csv(text, default_tenant="acme")
        assert devices[0].tags == {"fw": "1", "zone": "a"} and devices[1].tags == {"fw": "2"}
        tokens = registry.import_devices(conn, devices)
        assert {t.device_id for t in tokens} == {"m-1", "m-2"}
        # importing again updates attributes and issues no new tokens
        again = registry.read_device_csv(text.replace("fw=1", "fw=3"), default_tenant="acme")
        assert registry.import_devices(conn, again) == []
        assert conn.execute("select tags->>'fw' from devices where device_id='m-1'").fetchone()[0] == "3"
    with pytest.raises(UserError, match="line 3, column device_id"):
        registry.read_device_csv("device_id\nok\nbad id\n", default_tenant="acme")
    with pytest.raises(UserError, match="line 2, column tags"):
        registry.read_device_csv("device_id,tags\nok,novalue\n", default_tenant="acme")
    with pytest.raises(UserError, match="unknown columns"):
        registry.read_device_csv("device_id,colour\nok,red\n", default_tenant="acme")


def test_auto_register_only_for_trusted_tenants(pg_url):
    with psycopg.connect(pg_url) as conn:
        _tenant(conn, "trusted", auto=True)
        _tenant(conn, "strict", auto=False)
        assert registry.auto_register(conn, "trusted", "new-1")
        assert not registry.auto_register(conn, "strict", "new-1")
        assert registry.device_exists(conn, "trusted", "new-1")
        assert not registry.device_exists(conn, "strict", "new-1")
