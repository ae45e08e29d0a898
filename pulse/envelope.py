"""Envelope v1: the device contract (docs/envelope-v1.md, schemas/envelope-v1.json).

Decoding is the hot path of ingest, so it uses msgspec (C decoder straight into typed
structs) rather than json + pydantic. Versions are dispatched on ``v``: a v2 decoder is
added to ``DECODERS`` beside v1; anything else is rejected as ``unsupported_version``.
Every rejection is an :class:`EnvelopeError` carrying a machine-readable reason.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Callable, Union

import msgspec


class Reason(StrEnum):
    """Why a piece of telemetry went to quarantine."""

    BAD_JSON = "bad_json"
    SCHEMA = "schema"
    UNSUPPORTED_VERSION = "unsupported_version"
    NON_FINITE = "non_finite"
    CLOCK_IN_FUTURE = "clock_in_future"
    CLOCK_INVALID = "clock_invalid"
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_TENANT = "unknown_tenant"
    DEVICE_DISABLED = "device_disabled"
    DEVICE_MISMATCH = "device_mismatch"
    BAD_TOPIC = "bad_topic"


class EnvelopeError(Exception):
    def __init__(self, reason: Reason, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
METRIC_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$")
MAX_METRICS = 1000
MAX_TAGS = 64
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # a device without a set clock reports 1970
_valid_metric_names: set[str] = set()  # names already checked against METRIC_RE (hot path)


@dataclass(slots=True)
class Telemetry:
    """One decoded, validated envelope (any version) in the platform's internal form."""

    device_id: str
    ts: datetime  # tz-aware UTC
    metrics: dict[str, float]
    seq: int | None = None
    msg_id: str | None = None
    tags: dict[str, str] | None = None


class _EnvelopeV1(msgspec.Struct, forbid_unknown_fields=False):
    v: int
    device_id: str
    ts: Union[datetime, int, float]
    metrics: dict[str, Union[float, bool]]
    seq: Union[int, None] = None
    msg_id: Union[str, None] = None
    tags: Union[dict[str, str], None] = None


class _VersionOnly(msgspec.Struct):
    v: Any = None


_v1_decoder = msgspec.json.Decoder(_EnvelopeV1)
_version_decoder = msgspec.json.Decoder(_VersionOnly)
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])


def _to_utc(ts: datetime | int | float) -> datetime:
    if isinstance(ts, datetime):
        # RFC 3339 demands an offset; a naive time is taken as UTC rather than rejected.
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    if not math.isfinite(ts):
        raise EnvelopeError(Reason.CLOCK_INVALID, f"ts {ts!r} is not a finite epoch")
    try:
        return datetime.fromtimestamp(ts / 1000.0, tz=UTC)  # epoch milliseconds
    except (OverflowError, OSError, ValueError) as exc:
        raise EnvelopeError(Reason.CLOCK_INVALID, f"ts {ts!r} is out of range") from exc


def _validate_v1(env: _EnvelopeV1, now: datetime, max_skew: timedelta) -> Telemetry:
    if not DEVICE_ID_RE.match(env.device_id):
        raise EnvelopeError(Reason.SCHEMA, f"device_id {env.device_id[:64]!r} is not a valid id")
    if not env.metrics:
        raise EnvelopeError(Reason.SCHEMA, "metrics must not be empty")
    if len(env.metrics) > MAX_METRICS:
        raise EnvelopeError(Reason.SCHEMA, f"{len(env.metrics)} metrics (max {MAX_METRICS})")
    metrics: dict[str, float] = {}
    for name, value in env.metrics.items():
        if name not in _valid_metric_names:
            if not METRIC_RE.match(name):
                raise EnvelopeError(Reason.SCHEMA, f"metric name {name[:64]!r} is not valid")
            if len(_valid_metric_names) < 100_000:  # a fleet has few distinct names; bound it anyway
                _valid_metric_names.add(name)
        if value is True or value is False:
            metrics[name] = 1.0 if value else 0.0
        elif math.isfinite(value):
            metrics[name] = value
        else:
            raise EnvelopeError(Reason.NON_FINITE, f"metric {name!r} is {value!r}")
    if env.tags is not None and len(env.tags) > MAX_TAGS:
        raise EnvelopeError(Reason.SCHEMA, f"{len(env.tags)} tags (max {MAX_TAGS})")
    ts = _to_utc(env.ts)
    if ts < EARLIEST:
        raise EnvelopeError(Reason.CLOCK_INVALID, f"ts {ts.isoformat()} is before {EARLIEST.year}")
    if ts - now > max_skew:
        raise EnvelopeError(Reason.CLOCK_IN_FUTURE, f"ts {ts.isoformat()} is ahead of server time {now.isoformat()}")
    return Telemetry(env.device_id, ts, metrics, env.seq, env.msg_id, env.tags)


def _decode_v1(payload: bytes, now: datetime, max_skew: timedelta) -> Telemetry:
    try:
        env = _v1_decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise _classify_validation_error(payload, exc) from None
    if env.v != 1:
        raise _version_error(env.v)
    return _validate_v1(env, now, max_skew)


# One decoder per envelope version; add v2 here beside v1.
DECODERS: dict[int, Callable[[bytes, datetime, timedelta], Telemetry]] = {1: _decode_v1}


def _version_error(v: Any) -> EnvelopeError:
    return EnvelopeError(Reason.UNSUPPORTED_VERSION, f"v={v!r}; supported: {sorted(DECODERS)}")


def _classify_validation_error(payload: bytes, exc: msgspec.ValidationError) -> EnvelopeError:
    # Only on the error path: look at `v` alone so that a v2 body is reported as an
    # unsupported version rather than as a v1 schema violation.
    try:
        v = _version_decoder.decode(payload).v
    except (msgspec.ValidationError, msgspec.DecodeError):
        v = None
    if isinstance(v, int) and not isinstance(v, bool) and v not in DECODERS:
        return _version_error(v)
    message = str(exc)
    if "out of range" in message and "metrics" in message:
        return EnvelopeError(Reason.NON_FINITE, message)
    return EnvelopeError(Reason.SCHEMA, message)


def decode(payload: bytes, *, now: datetime | None = None, max_skew_s: float = 300.0) -> Telemetry:
    """Decode and validate one envelope of any supported version. Raises EnvelopeError."""
    now = now or datetime.now(UTC)
    max_skew = timedelta(seconds=max_skew_s)
    try:
        return _decode_v1(payload, now, max_skew)
    except msgspec.DecodeError as exc:
        raise EnvelopeError(Reason.BAD_JSON, str(exc)) from None
    except EnvelopeError as err:
        if err.reason is Reason.UNSUPPORTED_VERSION:
            v = _version_decoder.decode(payload).v
            if isinstance(v, int) and v in DECODERS and v != 1:
                return DECODERS[v](payload, now, max_skew)
        raise


def split_body(body: bytes, content_type: str | None = None) -> list[bytes]:
    """Split an HTTP body (one envelope, a JSON array, or NDJSON) into envelope payloads.

    Raises EnvelopeError(bad_json) when the body as a whole cannot be split; individual
    envelopes are validated later, one by one, so one bad element does not sink a batch.
    """
    stripped = body.strip()
    if not stripped:
        raise EnvelopeError(Reason.BAD_JSON, "empty body")
    ndjson = content_type is not None and ("ndjson" in content_type or "jsonlines" in content_type)
    if not ndjson and stripped[:1] == b"[":
        try:
            return [bytes(raw) for raw in _raw_list_decoder.decode(stripped)]
        except msgspec.DecodeError as exc:
            raise EnvelopeError(Reason.BAD_JSON, str(exc)) from None
    if not ndjson:
        try:  # one envelope, possibly pretty-printed over several lines
            msgspec.json.decode(stripped)
            return [stripped]
        except msgspec.DecodeError:
            if b"\n" not in stripped:
                raise EnvelopeError(Reason.BAD_JSON, "body is not JSON, a JSON array or NDJSON") from None
    return [line for line in (ln.strip() for ln in stripped.split(b"\n")) if line]


def encode(
    device_id: str,
    ts: datetime,
    metrics: dict[str, float],
    *,
    seq: int | None = None,
    msg_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> bytes:
    """Build a v1 envelope (used by the simulator, tests and examples)."""
    body: dict[str, Any] = {"v": 1, "device_id": device_id, "ts": ts.astimezone(UTC).isoformat(), "metrics": metrics}
    if seq is not None:
        body["seq"] = seq
    if msg_id is not None:
        body["msg_id"] = msg_id
    if tags:
        body["tags"] = tags
    return msgspec.json.encode(body)


def json_schema() -> dict:
    """The JSON Schema of Envelope v1 (docs and device developers)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://opsconductor.dev/pulse/schemas/envelope-v1.json",
        "title": "Pulse telemetry envelope, version 1",
        "type": "object",
        "required": ["v", "device_id", "ts", "metrics"],
        "properties": {
            "v": {"const": 1, "description": "envelope version"},
            "device_id": {"type": "string", "pattern": DEVICE_ID_RE.pattern,
                          "description": "must equal the device id in the MQTT topic / of the HTTP token"},
            "ts": {
                "description": "reading time: RFC 3339 (UTC assumed when no offset) or epoch milliseconds",
                "oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
            },
            "seq": {"type": "integer", "description": "per-device sequence number (optional)"},
            "msg_id": {"type": "string", "description": "unique message id (optional)"},
            "metrics": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": MAX_METRICS,
                "propertyNames": {"pattern": METRIC_RE.pattern},
                "additionalProperties": {"oneOf": [{"type": "number"}, {"type": "boolean"}]},
                "description": "finite numbers; booleans are stored as 0/1",
            },
            "tags": {"type": "object", "maxProperties": MAX_TAGS, "additionalProperties": {"type": "string"}},
        },
        "additionalProperties": True,
    }
