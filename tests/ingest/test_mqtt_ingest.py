from datetime import timedelta

import psycopg

from pulse import envelope, registry
from pulse.simulator import utcnow
from tests.helpers import count, wait_until
from tests.ingest.mqttpub import Publisher


def test_mqtt_telemetry_is_stored_and_bad_input_quarantined(pg_url, fleet, make_service, mqtt_url, unique):
    tenant, _ = fleet
    make_service(pg_url)
    pub = Publisher(mqtt_url, f"pub-{unique}")
    now = utcnow()
    try:
        for i in range(50):
            body = envelope.encode("d1", now - timedelta(seconds=i), {"temp_c": 20.0 + i, "rpm": 1000.0})
            pub.publish(f"pulse/v1/{tenant}/d1/telemetry", body, i)
        bad = {
            "device_mismatch": (f"pulse/v1/{tenant}/d2/telemetry", envelope.encode("d1", now, {"a": 1.0})),
            "unknown_device": (f"pulse/v1/{tenant}/ghost/telemetry", envelope.encode("ghost", now, {"a": 1.0})),
            "unknown_tenant": (f"pulse/v1/nobody{unique}/d1/telemetry", envelope.encode("d1", now, {"a": 1.0})),
            "bad_json": (f"pulse/v1/{tenant}/d1/telemetry", b"\xff\xfe not json"),
            "unsupported_version": (f"pulse/v1/{tenant}/d1/telemetry", b'{"v": 9}'),
            "bad_topic": (f"pulse/v1//d1/telemetry", envelope.encode("d1", now, {"a": 1.0})),
        }
        for i, (topic, payload) in enumerate(bad.values()):
            pub.publish(topic, payload, 100 + i)
        pub.wait_acked(56)
        wait_until(lambda: count(pg_url, "select count(*) from telemetry") == 100, message="100 rows")
        wait_until(lambda: count(pg_url, "select count(*) from quarantine") == len(bad), message="quarantine")
        with psycopg.connect(pg_url) as conn:
            reasons = {r[0] for r in conn.execute("select reason from quarantine")}
            assert reasons == set(bad)
            last = conn.execute("select last_values from device_state where device_id='d1'").fetchone()[0]
            assert last == {"temp_c": 20.0, "rpm": 1000.0}
    finally:
        pub.close()


def test_auto_register_tenant_accepts_new_devices(pg_url, make_service, mqtt_url, unique):
    tenant = f"auto{unique}"
    with psycopg.connect(pg_url) as conn:
        registry.upsert_tenant(conn, tenant, "Trusted broker", auto_register=True)
    make_service(pg_url)
    pub = Publisher(mqtt_url, f"pub-{unique}")
    try:
        pub.publish(f"pulse/v1/{tenant}/newcomer-7/telemetry", envelope.encode("newcomer-7", utcnow(), {"a": 1.0}), 1)
        wait_until(lambda: count(pg_url, "select count(*) from telemetry where device_id='newcomer-7'") == 1)
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("select auto_registered from devices where device_id='newcomer-7'").fetchone()[0]
    finally:
        pub.close()
