"""Fixtures for the channel tests: notifications and a real loopback HTTP receiver."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from alerting.channels import Notification
from tests.alerting.channels.receivers import HttpReceiver


@pytest.fixture
def make_notification():
    def make(**over) -> Notification:
        alert_id = over.pop("alert_id", str(uuid.uuid4()))
        base = dict(
            alert_id=alert_id,
            event_id=42,
            event="firing",
            tenant_id="acme",
            rule_id="r-temp-high",
            rule_name="Temperature high",
            device_id="dev-17",
            site_id="plant-a",
            severity="critical",
            summary="temperature 81.5 > 80 for 5m",
            value=81.5,
            labels={"metric": "temperature", "zone": "north"},
            started_at=datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc),
            at=datetime(2025, 3, 1, 12, 5, tzinfo=timezone.utc),
            url="https://pulse.example/alerts/" + alert_id,
            idempotency_key=f"{alert_id}:42:ch-1",
        )
        base.update(over)
        return Notification(**base)

    return make


@pytest.fixture
def http_receiver():
    r = HttpReceiver()
    yield r
    r.close()
