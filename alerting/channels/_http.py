"""Shared HTTP delivery: one POST, uniform status → DeliveryResult mapping."""

from __future__ import annotations

import functools
import ssl
import time
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

import certifi
import httpx

from alerting.channels.base import ChannelError, DeliveryResult, excerpt

USER_AGENT = "OpsConductor-Pulse/1"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT by definition
        when = when.replace(tzinfo=timezone.utc)
    now_ts = time.time() if now is None else now
    return max(0.0, when.timestamp() - now_ts)


def map_http_response(status: int, headers: Mapping[str, str], body: bytes | str | None) -> DeliveryResult:
    """2xx ok; 429/503 retry with Retry-After; 408/5xx retryable; other 4xx (and 3xx) permanent."""
    text = excerpt(body)
    if 200 <= status < 300:
        return DeliveryResult(ok=True, status_code=status, response_excerpt=text)
    retry_after = parse_retry_after(headers.get("retry-after")) if status in (429, 503) else None
    if status in (408, 429) or status >= 500:
        return DeliveryResult(
            ok=False, status_code=status, error=f"HTTP {status}", retry_after_s=retry_after, response_excerpt=text
        )
    # 3xx: we never follow redirects (a webhook that moved is a config problem, and following
    # could leak the body to another host); other 4xx: the request itself is wrong.
    return DeliveryResult(ok=False, status_code=status, error=f"HTTP {status}", permanent=True, response_excerpt=text)


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    # Built once: creating a verifying context loads the CA bundle (~10 ms); clients are per attempt.
    return ssl.create_default_context(cafile=certifi.where())


async def post_json(
    url: str,
    payload: Any,
    *,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
) -> DeliveryResult:
    """POST ``payload`` as JSON (or pre-encoded ``content``) and map the outcome.

    A client per attempt: channels run under different event loops (worker, CLI test
    send), and an attempt is rare enough that connection reuse does not matter.
    """
    hdrs = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
    hdrs.update(headers or {})
    try:
        async with httpx.AsyncClient(timeout=timeout_s, verify=_ssl_context(), follow_redirects=False) as client:
            if content is not None:
                resp = await client.post(url, content=content, headers=hdrs)
            else:
                resp = await client.post(url, json=payload, headers=hdrs)
    except httpx.TimeoutException as exc:
        raise ChannelError(f"timeout after {timeout_s:g}s ({type(exc).__name__})") from None
    except httpx.InvalidURL as exc:
        raise ChannelError(f"invalid URL: {exc}", permanent=True) from None
    except httpx.UnsupportedProtocol as exc:
        raise ChannelError(f"unsupported URL scheme: {exc}", permanent=True) from None
    except httpx.HTTPError as exc:  # connect refused, reset, DNS, TLS: worth retrying
        raise ChannelError(f"{type(exc).__name__}: {exc}") from None
    return map_http_response(resp.status_code, resp.headers, resp.content)
