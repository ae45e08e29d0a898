"""A QoS-1 test publisher that records which messages the broker acknowledged."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt

from pulse.settings import parse_mqtt_url


class Publisher:
    def __init__(self, url: str, client_id: str):
        host, port = parse_mqtt_url(url)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(200)
        self._sent: list[tuple[int, mqtt.MQTTMessageInfo]] = []
        self.client.connect(host, port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, key: int) -> None:
        self._sent.append((key, self.client.publish(topic, payload, qos=1)))

    @property
    def acked(self) -> set[int]:
        """Keys of the messages whose PUBACK arrived (the broker has them)."""
        return {key for key, info in self._sent if info.is_published()}

    def wait_acked(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
