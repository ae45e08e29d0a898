import json

import httpx
import msgspec
import pytest

from pulse import envelope
from pulse.simulator import utcnow
from tests.helpers import count


def env(device, seconds_ago=1, **metrics):
    from datetime import timedelta

    return envelope.encode(device, utcnow() - timedelta(seconds=seconds_ago), metrics or {"temp_c": 20.0})


@pytest.fixture
def http(pg_url, fleet, make_service):
    service = make_service(pg_url, mqtt=False)
    tenant, tokens = fleet
    client = httpx.Client(base_url=f"http://127.0.0.1:{service.http_port}", timeout=10)
    yield client, tokens, service
    client.close()


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_single_array_and_ndjson_are_stored_before_202(http, pg_url):
    client, tokens, _ = http
    r = client.post("/v1/telemetry", content=env("d1", temp_c=1.0, rpm=3), headers=auth(tokens["d1"]))
    assert r.status_code == 202 and r.json()["rows"] == 2
    assert count(pg_url, "select count(*) from telemetry where device_id='d1'") == 2  # durable at 202
    array = b"[" + b",".join(env("d1", seconds_ago=s) for s in range(10, 15)) + b"]"
    assert client.post("/v1/telemetry", content=array, headers=auth(tokens["d1"])).json()["accepted"] == 5
    nd = b"\n".join(env("d1", seconds_ago=s) for s in range(20, 23))
    r = client.post("/v1/telemetry", content=nd, headers={**auth(tokens["d1"]), "Content-Type": "application/x-ndjson"})
    assert r.status_code == 202 and r.json()["accepted"] == 3
    assert count(pg_url, "select count(*) from telemetry") == 10


def test_partial_batch_quarantines_the_bad_envelopes(http, pg_url):
    client, tokens, _ = http
    body = b"[" + env("d1") + b"," + env("d2") + b',{"v":1,"device_id":"d1","ts":1,"metrics":{}}]'
    r = client.post("/v1/telemetry", content=body, headers=auth(tokens["d1"]))
    assert r.status_code == 202
    data = r.json()
    assert data["accepted"] == 1 and data["rejected_count"] == 2
    assert {x["reason"] for x in data["rejected"]} == {"device_mismatch", "schema"}
    assert count(pg_url, "select count(*) from quarantine where transport='http'") == 2


@pytest.mark.parametrize("headers, body, status, reason", [
    ({}, b"{}", 401, "unauthorized"),
    ({"Authorization": "Bearer pt_nope"}, b"{}", 401, "unauthorized"),
    ("d1", b"<xml/>", 415, "unsupported_media_type"),
    ("d1", b"{not json", 400, "bad_json"),
    ("d1", b'{"v": 2, "device_id": "d1"}', 400, "unsupported_version"),
])
def test_errors_are_json_with_a_reason(http, pg_url, headers, body, status, reason):
    client, tokens, _ = http
    if headers == "d1":
        headers = {**auth(tokens["d1"]), "Content-Type": "text/xml" if status == 415 else "application/json"}
    r = client.post("/v1/telemetry", content=body, headers=headers)
    assert r.status_code == status
    assert r.json()["error"] == reason and r.json()["detail"]
    if status == 400:
        assert count(pg_url, "select count(*) from quarantine where reason = %s", (reason,)) == 1


def test_body_too_large_is_413(pg_url, fleet, make_service):
    service = make_service(pg_url, mqtt=False, http_max_body_bytes=1000)
    r = httpx.post(f"http://127.0.0.1:{service.http_port}/v1/telemetry", content=b"[" + b" " * 5000 + b"]",
                   headers=auth(fleet[1]["d1"]))
    assert r.status_code == 413 and r.json()["error"] == "too_large"


def test_full_queue_is_429_with_retry_after(pg_url, fleet, make_service):
    service = make_service(pg_url, mqtt=False, queue_max_rows=1)
    service.writer._queued_rows = 10**9  # the writer is swamped: nothing more fits
    try:
        r = httpx.post(f"http://127.0.0.1:{service.http_port}/v1/telemetry", content=env("d1"),
                       headers=auth(fleet[1]["d1"]))
    finally:
        service.writer._queued_rows = 0
    assert r.status_code == 429 and r.headers["retry-after"] == "1"


def test_rotated_token_and_disabled_device_are_refused(http, pg_url, fleet):
    import psycopg

    from pulse import registry

    client, tokens, service = http
    tenant = fleet[0]
    with psycopg.connect(pg_url) as conn:
        registry.rotate_token(conn, tenant, "d2")
        registry.set_status(conn, tenant, "d3", "disabled")
    service.directory.refresh()
    assert client.post("/v1/telemetry", content=env("d2"), headers=auth(tokens["d2"])).status_code == 401
    r = client.post("/v1/telemetry", content=env("d3"), headers=auth(tokens["d3"]))
    assert r.status_code == 400 and r.json()["error"] == "device_disabled"


def test_health_and_metrics(http):
    client, tokens, _ = http
    client.post("/v1/telemetry", content=env("d1"), headers=auth(tokens["d1"]))
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["writer_connected"] is True
    text = client.get("/metrics").text
    assert "pulse_ingest_rows_stored_total" in text and "pulse_ingest_queue_rows" in text
