"""Generic HTTP webhook: JSON body signed with HMAC-SHA256 over ``f"{timestamp}.{body}"``.

Headers sent:
  X-Pulse-Timestamp        unix seconds (also inside the signed string → replay window)
  X-Pulse-Signature        ``v1=<hex>`` per active signing key, comma-separated (rotation:
                           add the new key, let receivers switch, then drop the old one)
  X-Pulse-Idempotency-Key  one per (alert event, channel): identical across retries
  X-Pulse-Event            firing | acknowledged | resolved | flapping | ...
Receivers verify with ``verify_signature`` (or the stdlib snippet in docs/webhooks.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import Field, field_validator

from alerting.channels._http import post_json
from alerting.channels.base import (
    Channel,
    ChannelConfigBase,
    DeliveryResult,
    Notification,
    SecretRef,
    SendContext,
    redact_url,
)

SIGNATURE_VERSION = "v1"
HEADER_TIMESTAMP = "X-Pulse-Timestamp"
HEADER_SIGNATURE = "X-Pulse-Signature"
HEADER_IDEMPOTENCY = "X-Pulse-Idempotency-Key"
HEADER_EVENT = "X-Pulse-Event"
_RESERVED = {h.lower() for h in (HEADER_TIMESTAMP, HEADER_SIGNATURE, HEADER_IDEMPOTENCY, HEADER_EVENT)} | {
    "content-type",
    "content-length",
    "host",
}


class WebhookConfig(ChannelConfigBase):
    type: Literal["webhook"] = "webhook"
    # A plain URL, or {env: NAME} when the URL itself embeds a token.
    url: str | SecretRef
    # Every listed key signs each request; at least one (unsigned webhooks cannot be trusted).
    signing_keys: list[SecretRef] = Field(min_length=1)
    # Extra headers, e.g. {"Authorization": {env: HOOK_TOKEN}}; values may be secrets.
    headers: dict[str, str | SecretRef] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str | SecretRef) -> str | SecretRef:
        if isinstance(v, str) and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, v: dict[str, str | SecretRef]) -> dict[str, str | SecretRef]:
        clash = sorted(k for k in v if k.lower() in _RESERVED)
        if clash:
            raise ValueError(f"headers set by Pulse cannot be overridden: {', '.join(clash)}")
        return v


def _key_bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode("utf-8")


def compute_signature(body: bytes, timestamp: int | str, key: str | bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body``."""
    return hmac.new(_key_bytes(key), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(body: bytes, timestamp: int, keys: Iterable[str | bytes]) -> str:
    """The X-Pulse-Signature value: one ``v1=`` entry per active key."""
    return ",".join(f"{SIGNATURE_VERSION}={compute_signature(body, timestamp, k)}" for k in keys)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # Header names are case-insensitive; plain dicts from some frameworks are not.
    value = headers.get(name)
    if value is None:
        lname = name.lower()
        for k, v in headers.items():
            if k.lower() == lname:
                return v
    return value


def verify_signature(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | bytes | Iterable[str | bytes],
    tolerance_s: float = 300,
    *,
    now: float | None = None,
) -> bool:
    """True if any ``v1=`` signature matches any of the receiver's secrets and the
    timestamp is within ``tolerance_s`` of ``now`` (replay protection). Pure: no I/O."""
    ts = _header(headers, HEADER_TIMESTAMP)
    sig_header = _header(headers, HEADER_SIGNATURE)
    if not ts or not sig_header or not ts.strip().isdigit():
        return False
    ts = ts.strip()
    current = time.time() if now is None else now
    if abs(current - int(ts)) > tolerance_s:
        return False
    secrets = [secret] if isinstance(secret, (str, bytes)) else list(secret)
    candidates = []
    for part in sig_header.split(","):
        version, _, value = part.strip().partition("=")
        if version == SIGNATURE_VERSION and value:
            candidates.append(value)
    expected = [compute_signature(body, ts, s) for s in secrets]
    # compare_digest on every pair: constant time per comparison, no early exit on a match prefix.
    return any(hmac.compare_digest(e, c) for e in expected for c in candidates)


def encode_body(n: Notification) -> bytes:
    # Compact and key-sorted: the exact bytes signed are the bytes sent.
    return json.dumps(n.to_json_dict(), separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


class WebhookChannel(Channel):
    type = "webhook"
    Config = WebhookConfig
    config: WebhookConfig

    def __init__(self, config: WebhookConfig, *, clock=time.time) -> None:
        super().__init__(config)
        self._clock = clock  # injectable so tests can check the replay window

    def describe(self) -> str:
        u = self.config.url
        return f"webhook (url from ${u.env})" if isinstance(u, SecretRef) else f"webhook {redact_url(u)}"

    async def _deliver(self, n: Notification, ctx: SendContext) -> DeliveryResult:
        url = ctx.secret(self.config.url) if isinstance(self.config.url, SecretRef) else self.config.url
        keys = [ctx.secret(k) for k in self.config.signing_keys]
        body = encode_body(n)
        ts = int(self._clock())
        headers = {k: (ctx.secret(v) if isinstance(v, SecretRef) else v) for k, v in self.config.headers.items()}
        headers.update(
            {
                HEADER_TIMESTAMP: str(ts),
                HEADER_SIGNATURE: sign(body, ts, keys),
                HEADER_IDEMPOTENCY: n.idempotency_key,
                HEADER_EVENT: n.event,
            }
        )
        return await post_json(url, None, content=body, headers=headers, timeout_s=self.config.timeout_s)
