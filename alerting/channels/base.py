"""The one channel model: Notification in, DeliveryResult out.

Every channel type (Slack, PagerDuty, Teams, webhook, email, SNMP, MQTT) implements
``Channel.send``. The delivery worker owns retries, backoff, circuit breaking and the
delivery log; a channel only makes one attempt and reports what happened, never raising
for a delivery failure.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

EVENTS = frozenset({"firing", "acknowledged", "resolved", "flapping", "flapping_ended", "reminder", "test"})
SEVERITIES = frozenset({"info", "warning", "critical"})
Event = Literal["firing", "acknowledged", "resolved", "flapping", "flapping_ended", "reminder", "test"]
Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True, kw_only=True)
class Notification:
    """One alert event addressed to one channel (what the delivery worker hands a plugin)."""

    alert_id: str
    event_id: int
    event: Event
    tenant_id: str
    rule_id: str
    rule_name: str
    device_id: str | None = None  # None for fleet alerts
    site_id: str | None = None
    severity: Severity
    summary: str
    value: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    started_at: datetime
    at: datetime
    url: str | None = None
    idempotency_key: str  # one per (alert event, channel): receivers dedupe retries on it
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Fail where the bad value is made, not deep inside a payload builder.
        if self.event not in EVENTS:
            raise ValueError(f"unknown event {self.event!r}; expected one of {sorted(EVENTS)}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}; expected one of {sorted(SEVERITIES)}")

    @property
    def target_label(self) -> str:
        """What the alert is about, for humans: the device, or 'fleet'."""
        return self.device_id or "fleet"

    def to_json_dict(self) -> dict[str, Any]:
        """The canonical JSON document (webhook body, MQTT payload); version 1."""
        return {
            "version": 1,
            "alert_id": self.alert_id,
            "event_id": self.event_id,
            "event": self.event,
            "tenant_id": self.tenant_id,
            "rule_id": self.rule_id,
            "rule_name": self.rule_name,
            "device_id": self.device_id,
            "site_id": self.site_id,
            "severity": self.severity,
            "summary": self.summary,
            "value": self.value,
            "labels": dict(self.labels),
            "started_at": self.started_at.isoformat(),
            "at": self.at.isoformat(),
            "url": self.url,
            "idempotency_key": self.idempotency_key,
            "extra": dict(self.extra),
        }


@dataclass(frozen=True, kw_only=True)
class DeliveryResult:
    """Outcome of one delivery attempt, as the delivery log records it."""

    ok: bool
    status_code: int | None = None  # HTTP status, or SMTP reply code for email
    latency_ms: float = 0.0
    error: str | None = None  # redacted: never contains a secret
    retry_after_s: float | None = None  # from Retry-After on 429/503
    permanent: bool = False  # True → retrying cannot help (e.g. 400, 401, 404, bad config)
    response_excerpt: str | None = None
    skipped: bool = False  # ok and nothing sent: the channel has nothing to say for this event

    @property
    def retryable(self) -> bool:
        return not self.ok and not self.permanent


class ChannelError(Exception):
    """Raised inside a channel to end the attempt with a chosen failure result."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class SecretMissing(ChannelError):
    def __init__(self, env: str) -> None:
        # Naming the variable is fine; its value is the secret. Permanent: it will not
        # appear by itself, and the dead letter + re-drive covers fixing it.
        super().__init__(f"secret environment variable {env} is not set", permanent=True)


class SecretRef(BaseModel):
    """A secret given by reference, ``{env: NAME}`` in YAML; resolved only at send time.

    The config (and so its repr, logs, YAML dumps) holds the variable name, never the value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="environment variable holding the secret")

    def resolve(self) -> str:
        value = os.environ.get(self.env)
        if not value:
            raise SecretMissing(self.env)
        return value


class ChannelConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(default=10.0, gt=0, le=120, description="whole-attempt timeout")


_URL_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^\s/@'\"<>]*@)?(?P<host>[^\s/?#'\"<>]+)(?P<rest>[^\s'\"<>]*)")


def redact_url(url: str) -> str:
    """Keep scheme and host, drop credentials, path and query (where webhook tokens live)."""
    m = _URL_RE.fullmatch(url.strip())
    if not m:
        return "***"
    rest = m.group("rest")
    return f"{m.group('scheme')}{m.group('host')}" + ("/***" if rest not in ("", "/") else "")


class SendContext:
    """Per-attempt scratch: resolves secrets and remembers them so any text leaving the
    channel (error messages, response excerpts) can be scrubbed of them."""

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def secret(self, ref: SecretRef) -> str:
        value = ref.resolve()
        self._secrets.append(value)
        return value

    def redact(self, text: str | None) -> str | None:
        if text is None:
            return None
        # Longest first so a secret containing another is removed whole.
        for s in sorted(self._secrets, key=len, reverse=True):
            if s:
                text = text.replace(s, "***")
        return _URL_RE.sub(lambda m: redact_url(m.group(0)), text)


class Channel(ABC):
    """A notification channel plugin. Subclasses set ``type``/``Config`` and implement
    ``_deliver``; ``send`` adds the overall timeout, latency, redaction and the
    never-raise guarantee so each plugin cannot get those wrong on its own."""

    type: ClassVar[str]
    Config: ClassVar[type[ChannelConfigBase]]

    def __init__(self, config: ChannelConfigBase) -> None:
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config

    @abstractmethod
    async def _deliver(self, n: Notification, ctx: SendContext) -> DeliveryResult:
        """One attempt. May raise ChannelError (or anything); send() turns it into a result."""

    def describe(self) -> str:
        """A secret-free description of the destination for logs and the UI."""
        return self.type

    def overall_timeout_s(self) -> float:
        """Upper bound on one whole attempt. The margin over ``timeout_s`` lets the
        channel's own, more specific timeout error win; channels doing several network
        steps per attempt (email, MQTT) widen it."""
        return self.config.timeout_s + 2.0

    async def send(self, n: Notification) -> DeliveryResult:
        ctx = SendContext()
        t0 = time.perf_counter()
        try:
            # The outer bound protects the worker even if a library ignores its own timeout.
            result = await asyncio.wait_for(self._deliver(n, ctx), timeout=self.overall_timeout_s())
        except ChannelError as exc:
            result = DeliveryResult(ok=False, error=str(exc), permanent=exc.permanent)
        except (asyncio.TimeoutError, TimeoutError):
            result = DeliveryResult(ok=False, error=f"timeout after {self.overall_timeout_s():g}s")
        except asyncio.CancelledError:
            raise  # the worker is shutting down: that is not a delivery failure
        except Exception as exc:  # noqa: BLE001 - the contract is: never raise for delivery failures
            result = DeliveryResult(ok=False, error=f"{type(exc).__name__}: {exc}")
        latency_ms = (time.perf_counter() - t0) * 1000.0
        return replace(
            result,
            latency_ms=round(latency_ms, 3),
            error=ctx.redact(result.error),
            response_excerpt=ctx.redact(result.response_excerpt),
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def excerpt(text: str | bytes | None, limit: int = 500) -> str | None:
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "…"


def event_title(n: Notification) -> str:
    """Short human headline shared by chat/email channels."""
    prefix = {
        "firing": "FIRING",
        "acknowledged": "ACKNOWLEDGED",
        "resolved": "RESOLVED",
        "flapping": "FLAPPING",
        "flapping_ended": "FLAPPING ENDED",
        "reminder": "STILL FIRING",
        "test": "TEST",
    }[n.event]
    return f"[{prefix}] {n.severity.upper()} {n.rule_name} on {n.target_label}"


def format_value(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:g}"
