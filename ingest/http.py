"""HTTP ingest: ``POST /v1/telemetry`` plus ``/healthz`` and ``/metrics``.

Body: one envelope, a JSON array of envelopes, or NDJSON. ``Authorization: Bearer
<device token>``. 202 only after the batch is committed. Errors are JSON with a reason:
400 (nothing valid in the body), 401 (token), 413 (body too large), 415 (content type),
429 (writer queue full; Retry-After), 503 (shutting down).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ingest import metrics
from ingest.pipeline import Pipeline, quarantine_row
from ingest.writer import BatchWriter, QueueFull, WorkItem
from pulse import envelope
from pulse.envelope import EnvelopeError, Reason

ACCEPTED_TYPES = ("application/json", "application/x-ndjson", "application/ndjson", "application/jsonlines")


def _error(status: int, reason: str, detail: str, headers: dict | None = None, **extra) -> JSONResponse:
    metrics.HTTP_REJECTED.labels(str(status)).inc()
    return JSONResponse({"error": reason, "detail": detail, **extra}, status_code=status, headers=headers)


def create_app(pipeline: Pipeline, writer: BatchWriter, *, max_body_bytes: int = 8 * 1024 * 1024,
               health: callable = lambda: {}) -> Starlette:
    async def submit(item: WorkItem) -> None:
        done: concurrent.futures.Future = concurrent.futures.Future()
        item.done = lambda: done.set_result(None)
        writer.submit(item, block=False)
        await asyncio.wrap_future(done)

    async def telemetry(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(401, "unauthorized", "send Authorization: Bearer <device token>")
        device = await asyncio.to_thread(pipeline.directory.by_token, token.strip())
        if device is None:
            return _error(401, "unauthorized", "unknown or rotated device token")
        content_type = (request.headers.get("content-type") or "application/json").split(";")[0].strip().lower()
        if content_type not in ACCEPTED_TYPES:
            return _error(415, "unsupported_media_type", f"content type {content_type!r}; use one of {ACCEPTED_TYPES}")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return _error(413, "too_large", f"body over {max_body_bytes} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                return _error(413, "too_large", f"body over {max_body_bytes} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        try:
            payloads = envelope.split_body(body, content_type)
        except EnvelopeError as err:
            item = WorkItem(quarantine=[quarantine_row("http", err.reason, err.detail, body,
                                                       tenant_id=device.tenant_id, device_id=device.device_id)])
            try:
                await submit(item)
            except QueueFull:
                return _error(429, "overloaded", "ingest queue is full; retry", headers={"Retry-After": "1"})
            return _error(400, str(err.reason), err.detail)
        item, rejected = pipeline.from_http(device, payloads)
        try:
            await submit(item)
        except QueueFull:
            return _error(429, "overloaded", "ingest queue is full; retry", headers={"Retry-After": "1"})
        accepted = len(item.records)
        if accepted == 0:
            return _error(400, rejected[0]["reason"] if rejected else str(Reason.SCHEMA),
                          "no valid envelope in the body; all were quarantined", rejected=rejected[:100])
        return JSONResponse({"accepted": accepted, "rows": sum(len(r.telemetry.metrics) for r in item.records),
                             "rejected": rejected[:100], "rejected_count": len(rejected)}, status_code=202)

    async def healthz(request: Request) -> Response:
        state = {"writer_connected": writer.connected, "queue_rows": writer.queued_rows,
                 "last_commit_age_s": None if writer.last_commit_at is None
                 else round(time.time() - writer.last_commit_at, 3), **health()}
        ok = writer.connected or writer.last_commit_at is None
        return JSONResponse({"status": "ok" if ok else "degraded", **state}, status_code=200 if ok else 503)

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[
        Route("/v1/telemetry", telemetry, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ])
