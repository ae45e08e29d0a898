"""Fixtures shared by the analytics tests (tests/assets, tests/pipelines)."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pulse.simulate import backfill, provision
from pulse.simulator import make_fleet

T0 = datetime(2026, 1, 5, 10, tzinfo=UTC)  # a fixed past hour: partitions exist, hot window passed
ANALYTICS_TABLES = ["lake_exports", "asset_check_results"]


def clear_analytics(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("truncate " + ", ".join(ANALYTICS_TABLES))


@pytest.fixture
def analytics_url(pg_url) -> str:
    """TimescaleDB test database, emptied, analytics tables included."""
    clear_analytics(pg_url)
    return pg_url


@pytest.fixture
def analytics_any_url(any_store_url) -> str:
    clear_analytics(any_store_url)
    return any_store_url


def seed(url: str, *, hours: int = 2, devices: int = 6, start: datetime = T0, tenants=("acme", "beta")):
    fleet = make_fleet(devices, tenants=tenants)
    with psycopg.connect(url) as conn:
        provision(conn, fleet)
        result = backfill(conn, fleet, start, start + timedelta(hours=hours), dropout=0.0)
    return fleet, result.rows
