"""Real stack for the alert service tests: TimescaleDB, the in-process ingest service
(HTTP only) with an AlertService listener, config applied through alerting.config."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from alerting import config as alert_config
from alerting.service import AlertService
from ingest.service import IngestService
from pulse.settings import Settings
from tests.helpers import free_port, wait_until


def fleet_yaml(tenant: str, rules_yaml: str, devices=("d1", "d2")) -> str:
    devs = "\n".join(f"      - {{id: {d}, site: s1, type: pump, tags: {{line: a}}}}" for d in devices)
    return f"""
tenants:
  - id: {tenant}
    sites: [{{id: s1}}]
    devices:
{devs}
rules:
{rules_yaml}
"""


def apply_config(url: str, text: str) -> dict[str, str]:
    cfg = alert_config.loads(text)
    with psycopg.connect(url) as conn:
        summary = alert_config.apply(conn, cfg)
    return {t.device_id: t.token for t in summary["tokens"]}


class Stack:
    def __init__(self, url: str):
        self.url = url
        self.port = free_port()
        self.alerts = AlertService(url, snapshot_interval_s=3600, config_check_s=3600)
        settings = Settings(batch_linger_ms=5)
        self.ingest = IngestService(settings, url, mqtt_url=None, http_port=self.port, listeners=[self.alerts])

    def start(self) -> Stack:
        self.ingest.start()
        return self

    def stop(self) -> None:
        self.ingest.stop()

    def post(self, token: str, device: str, ts: datetime | list, **metrics: float) -> None:
        if isinstance(ts, list):  # many envelopes in one request: one commit, one engine batch
            body = [{"v": 1, "device_id": device, "ts": t.isoformat(), "metrics": m} for t, m in ts]
        else:
            body = {"v": 1, "device_id": device, "ts": ts.isoformat(), "metrics": metrics}
        r = httpx.post(f"http://127.0.0.1:{self.port}/v1/telemetry", json=body,
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 202, r.text


@pytest.fixture
def stack(pg_url):
    started: list[Stack] = []

    def make() -> Stack:
        s = Stack(pg_url).start()
        started.append(s)
        return s

    yield make
    for s in started:
        try:
            s.stop()
        except Exception:  # already stopped by the test
            pass


def rows(url: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def now() -> datetime:
    return datetime.now(UTC)


def wait_rows(url: str, sql: str, params=(), n: int = 1, timeout: float = 5.0, message: str = "rows"):
    return wait_until(lambda: (r := rows(url, sql, params)) and len(r) >= n and r, timeout=timeout,
                      interval=0.02, message=message)
