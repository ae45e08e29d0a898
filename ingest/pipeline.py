"""Transport-independent ingest: decode + validate → authorise → hand to the writer.

Both transports call into :class:`Pipeline`; it turns raw payloads into ``Record``s or
``QuarantineRow``s. It never raises for bad input: every rejection becomes a quarantine
row with a reason, committed in the same batch as the good rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ingest import metrics
from ingest.directory import DeviceDirectory, DeviceEntry
from ingest.writer import QuarantineRow, Record, WorkItem
from pulse import envelope
from pulse.envelope import EnvelopeError, Reason
from pulse.sharding import parse_shard_topic

MAX_QUARANTINE_PAYLOAD = 256 * 1024  # keep a huge garbage payload from bloating the table
_MQTT_ENVELOPES = metrics.ENVELOPES.labels("mqtt")  # bound once: labels() is a dict lookup under a lock
_HTTP_ENVELOPES = metrics.ENVELOPES.labels("http")


def quarantine_row(transport: str, reason: Reason | str, detail: str | None, payload: bytes, *,
                   tenant_id: str | None = None, device_id: str | None = None,
                   topic: str | None = None) -> QuarantineRow:
    metrics.QUARANTINED.labels(transport, str(reason)).inc()
    return QuarantineRow(transport, str(reason), (detail or "")[:1000] or None, payload[:MAX_QUARANTINE_PAYLOAD],
                         tenant_id, device_id, topic)


@dataclass(slots=True)
class TopicParts:
    tenant_id: str
    device_id: str


def parse_topic(topic: str, shard_root: str | None = None) -> TopicParts | None:
    """``pulse/v1/{tenant}/{device_id}/telemetry`` (any leading ``$share`` is not in it), or
    with ``shard_root`` also the shard topic ``{shard_root}/{shard}/{tenant}/{device}/telemetry``."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[0] == "pulse" and parts[1] == "v1" and parts[4] == "telemetry":
        return TopicParts(parts[2], parts[3]) if parts[2] and parts[3] else None
    if shard_root is not None:
        try:
            _, tenant, device = parse_shard_topic(topic, shard_root)
        except ValueError:
            return None
        return TopicParts(tenant, device)
    return None


class Pipeline:
    def __init__(self, directory: DeviceDirectory, *, max_skew_s: float = 300.0,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC), shard_root: str | None = None):
        self.directory = directory
        self.max_skew_s = max_skew_s
        self.now = now
        self.shard_root = shard_root  # sharded ingest: also accept the per-shard topics

    def _authorise(self, tenant_id: str, device_id: str) -> tuple[Reason, str] | None:
        entry = self.directory.device(tenant_id, device_id)
        if entry is None:
            if not self.directory.has_tenant(tenant_id):
                return Reason.UNKNOWN_TENANT, f"tenant {tenant_id!r} is not registered"
            return Reason.UNKNOWN_DEVICE, f"device {tenant_id}/{device_id} is not registered"
        if entry.status != "active":
            return Reason.DEVICE_DISABLED, f"device {tenant_id}/{device_id} is {entry.status}"
        return None

    def from_mqtt(self, topic: str, payload: bytes) -> WorkItem:
        """One MQTT message → a work item with one record or one quarantine row."""
        _MQTT_ENVELOPES.inc()
        parts = parse_topic(topic, self.shard_root)
        if parts is None:
            return WorkItem(quarantine=[quarantine_row("mqtt", Reason.BAD_TOPIC,
                                                       "expected pulse/v1/{tenant}/{device}/telemetry",
                                                       payload, topic=topic)])
        try:
            tel = envelope.decode(payload, now=self.now(), max_skew_s=self.max_skew_s)
        except EnvelopeError as err:
            return WorkItem(quarantine=[quarantine_row("mqtt", err.reason, err.detail, payload,
                                                       tenant_id=parts.tenant_id, device_id=parts.device_id,
                                                       topic=topic)])
        if tel.device_id != parts.device_id:
            return WorkItem(quarantine=[quarantine_row(
                "mqtt", Reason.DEVICE_MISMATCH, f"body device_id {tel.device_id!r} != topic device {parts.device_id!r}",
                payload, tenant_id=parts.tenant_id, device_id=parts.device_id, topic=topic)])
        refusal = self._authorise(parts.tenant_id, parts.device_id)
        if refusal is not None:
            return WorkItem(quarantine=[quarantine_row("mqtt", refusal[0], refusal[1], payload,
                                                       tenant_id=parts.tenant_id, device_id=parts.device_id,
                                                       topic=topic)])
        return WorkItem(records=[Record(parts.tenant_id, tel)])

    def from_http(self, device: DeviceEntry, payloads: list[bytes]) -> tuple[WorkItem, list[dict]]:
        """Envelopes of one authenticated HTTP request → a work item and per-envelope rejections."""
        item = WorkItem()
        rejected = []
        now = self.now()
        # the token identified the device; only its status can still refuse the envelopes
        refusal = ((Reason.DEVICE_DISABLED, f"device {device.tenant_id}/{device.device_id} is {device.status}")
                   if device.status != "active" else None)
        for index, payload in enumerate(payloads):
            _HTTP_ENVELOPES.inc()
            if refusal is not None:
                reason, detail = refusal
            else:
                try:
                    tel = envelope.decode(payload, now=now, max_skew_s=self.max_skew_s)
                except EnvelopeError as err:
                    reason, detail = err.reason, err.detail
                else:
                    if tel.device_id == device.device_id:
                        item.records.append(Record(device.tenant_id, tel))
                        continue
                    reason = Reason.DEVICE_MISMATCH
                    detail = f"body device_id {tel.device_id!r} is not the token's device {device.device_id!r}"
            item.quarantine.append(quarantine_row("http", reason, detail, payload,
                                                  tenant_id=device.tenant_id, device_id=device.device_id))
            rejected.append({"index": index, "reason": str(reason), "detail": detail})
        item.count_rows()
        return item, rejected
