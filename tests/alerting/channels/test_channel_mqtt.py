"""MQTT channel against the real Mosquitto broker (127.0.0.1:1883, or PULSE_TEST_MQTT_URL)."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import socket
import threading
import uuid
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alerting.channels import ChannelConfigError, build_channel
from alerting.channels.mqtt import render_topic
from tests.alerting.channels.receivers import free_port

pytestmark = pytest.mark.mqtt

_URL = urlparse(os.environ.get("PULSE_TEST_MQTT_URL", "mqtt://127.0.0.1:1883"))
HOST, PORT = _URL.hostname or "127.0.0.1", _URL.port or 1883


@pytest.fixture
def broker():
    try:
        socket.create_connection((HOST, PORT), timeout=1).close()
    except OSError as exc:
        pytest.fail(f"Mosquitto is not reachable at {HOST}:{PORT} (run scripts/services.sh): {exc}")
    return HOST, PORT


@pytest.fixture
def subscriber(broker):
    """A real subscriber; yields (subscribe(topic_filter), queue of received messages)."""
    received: queue.Queue = queue.Queue()
    subscribed = threading.Event()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"t-sub-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda _c, _u, msg: received.put(msg)
    client.on_subscribe = lambda *_a: subscribed.set()
    client.connect(*broker)
    client.loop_start()

    def subscribe(topic_filter: str) -> None:
        subscribed.clear()
        client.subscribe(topic_filter, qos=1)
        assert subscribed.wait(5), "SUBACK not received"

    yield subscribe, received
    client.disconnect()
    client.loop_stop()


def test_publish_qos1_json_to_templated_topic(broker, subscriber, make_notification):
    subscribe, received = subscriber
    tenant = f"t-{uuid.uuid4().hex[:8]}"  # isolates this run from anything else on the broker
    subscribe(f"pulse/alerts/{tenant}/#")
    ch = build_channel("mqtt", {"host": broker[0], "port": broker[1], "timeout_s": 5})
    n = make_notification(tenant_id=tenant, severity="warning")
    res = asyncio.run(ch.send(n))
    assert res.ok, res
    msg = received.get(timeout=5)
    assert msg.topic == f"pulse/alerts/{tenant}/warning"
    assert msg.qos == 1 and msg.retain is False
    doc = json.loads(msg.payload)
    assert doc["alert_id"] == n.alert_id and doc["severity"] == "warning" and doc["value"] == 81.5
    assert doc["idempotency_key"] == n.idempotency_key and doc["version"] == 1


def test_topic_values_cannot_inject_levels_or_wildcards(broker, subscriber, make_notification):
    subscribe, received = subscriber
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    subscribe(f"pulse/{tenant}/#")
    ch = build_channel("mqtt", {"host": broker[0], "port": broker[1],
                                "topic_template": "pulse/{tenant_id}/{device_id}/{event}", "qos": 2})
    assert asyncio.run(ch.send(make_notification(tenant_id=tenant, device_id="a/b+#", event="resolved"))).ok
    assert asyncio.run(ch.send(make_notification(tenant_id=tenant, device_id=None))).ok
    topics = sorted(received.get(timeout=5).topic for _ in range(2))
    assert topics == [f"pulse/{tenant}/a_b__/resolved", f"pulse/{tenant}/fleet/firing"]


def test_unreachable_broker_is_retryable(make_notification):
    ch = build_channel("mqtt", {"host": "127.0.0.1", "port": free_port(), "timeout_s": 2})
    res = asyncio.run(ch.send(make_notification()))
    assert not res.ok and res.retryable and "cannot connect" in res.error


def test_topic_template_validation():
    with pytest.raises(ChannelConfigError, match=r"topic_template: .*unknown placeholder \{secret\}"):
        build_channel("mqtt", {"host": "h", "topic_template": "pulse/{secret}"})
    with pytest.raises(ChannelConfigError, match="wildcards"):
        build_channel("mqtt", {"host": "h", "topic_template": "pulse/#"})
    with pytest.raises(ChannelConfigError, match="qos"):
        build_channel("mqtt", {"host": "h", "qos": 0})


def test_render_topic_default(make_notification):
    assert render_topic("pulse/alerts/{tenant_id}/{severity}", make_notification()) == "pulse/alerts/acme/critical"


def test_ok_only_after_puback(make_notification):
    """A broker that accepts the connection but never acknowledges the PUBLISH: the channel
    must report a retryable timeout, not success (a QoS 1 send is only done at PUBACK)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    seen: list[int] = []

    def silent_broker():
        conn, _ = server.accept()
        with conn:
            conn.recv(1024)  # CONNECT
            conn.sendall(b"\x20\x02\x00\x00")  # CONNACK, session not present, accepted
            conn.settimeout(3)
            try:
                while data := conn.recv(1024):
                    seen.append(data[0] >> 4)  # packet types: 3 = PUBLISH
            except OSError:
                pass

    t = threading.Thread(target=silent_broker, daemon=True)
    t.start()
    try:
        ch = build_channel("mqtt", {"host": "127.0.0.1", "port": port, "timeout_s": 0.5})
        res = asyncio.run(ch.send(make_notification()))
    finally:
        t.join(5)
        server.close()
    assert 3 in seen  # the PUBLISH did reach the "broker"
    assert not res.ok and res.retryable and "PUBACK" in res.error
