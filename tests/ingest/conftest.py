import psycopg
import pytest

from ingest.mqtt import drop_session
from ingest.service import IngestService
from pulse import registry
from pulse.settings import Settings
from tests.helpers import free_port


@pytest.fixture
def fleet(pg_url, unique):
    """A tenant with a site and three devices; returns (tenant, {device: token})."""
    tenant = f"t{unique}"
    with psycopg.connect(pg_url) as conn:
        registry.upsert_tenant(conn, tenant, "Test")
        registry.upsert_site(conn, tenant, "s1", "Site 1")
        tokens = {}
        for dev in ("d1", "d2", "d3"):
            tokens[dev] = registry.add_device(conn, registry.Device(tenant, dev, "s1", "pump")).token
    return tenant, tokens


@pytest.fixture
def make_service(unique, mqtt_url):
    started = []

    def make(db_url, *, mqtt=True, **overrides):
        settings = Settings(mqtt_share_group=f"g{unique}", mqtt_session_expiry_s=120, batch_linger_ms=20,
                            **overrides)
        service = IngestService(settings, db_url, mqtt_url=mqtt_url if mqtt else None, http_port=free_port(),
                                worker_id=f"w{unique}-{len(started)}")
        service.start()
        if service.mqtt:
            assert service.mqtt.connected.wait(10)
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()
        if service.mqtt:
            drop_session(mqtt_url, service.mqtt.client_id)
