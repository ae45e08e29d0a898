"""`pulse ingest`: the MQTT subscriber and the HTTP endpoint in one process, one writer.

With ``settings.shards`` the MQTT side is sharded (ingest/shards.py): this worker routes
device telemetry to shard topics and consumes the shards it owns, and the alert service
evaluates only those shards' devices.
"""

from __future__ import annotations

import signal
import socket
import threading
import time

import structlog
import uvicorn

from ingest.directory import DeviceDirectory
from ingest.http import create_app
from ingest.mqtt import TELEMETRY_FILTER, MqttIngest
from ingest.pipeline import Pipeline
from ingest.writer import BatchWriter
from pulse.settings import Settings

log = structlog.get_logger("pulse.ingest")


class IngestService:
    def __init__(self, settings: Settings, database_url: str, *, mqtt_url: str | None = None,
                 http_port: int | None = None, worker_id: str | None = None,
                 listeners: list | None = None):
        """``listeners``: objects with ``on_committed(records)`` (called after each commit,
        must not block) and optional ``start()``/``stop()`` — the alert engine's hook."""
        self.settings = settings
        self.directory = DeviceDirectory(database_url)
        self.listeners = list(listeners or [])
        self.writer = BatchWriter(database_url, max_batch_rows=settings.batch_max_rows,
                                  linger_ms=settings.batch_linger_ms, max_queue_rows=settings.queue_max_rows,
                                  on_commit=[listener.on_committed for listener in self.listeners])
        sharded = bool(settings.shards and mqtt_url)
        self.pipeline = Pipeline(self.directory, max_skew_s=settings.max_clock_skew_s,
                                 shard_root=settings.mqtt_shard_root if sharded else None)
        worker = worker_id or socket.gethostname()
        self.mqtt = None
        if mqtt_url and not sharded:
            from ingest.receiver import ReceiverProcess

            receiver = ReceiverProcess if settings.mqtt_receive_process else MqttIngest
            self.mqtt = receiver(mqtt_url, self.pipeline, self.writer, client_id=f"{settings.mqtt_client_id}-{worker}",
                                 share_group=settings.mqtt_share_group, topic_filter=TELEMETRY_FILTER,
                                 session_expiry_s=settings.mqtt_session_expiry_s)
        self.shards = None
        if sharded:
            from ingest.shards import ShardCoordinator

            alerts = next((x for x in self.listeners if hasattr(x, "acquire_shard")), None)
            self.shards = ShardCoordinator(database_url, mqtt_url, self.pipeline, self.writer, worker_id=worker,
                                           shards=settings.shards, root=settings.mqtt_shard_root,
                                           client_prefix=settings.mqtt_client_id,
                                           share_group=settings.mqtt_share_group,
                                           session_expiry_s=settings.mqtt_session_expiry_s, alerts=alerts)
        self.http_port = http_port
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None

    def health(self) -> dict:
        if self.shards is not None:
            return {"mqtt_connected": self.shards.connected.is_set(), "shards": sorted(self.shards.owned)}
        return {"mqtt_connected": self.mqtt.connected.is_set() if self.mqtt else None}

    def start(self) -> None:
        for listener in self.listeners:
            if hasattr(listener, "start"):
                listener.start()
        self.directory.start()
        self.writer.start()
        if self.mqtt is not None:
            self.mqtt.start()
        if self.shards is not None:
            self.shards.start()
        if self.http_port is not None:
            app = create_app(self.pipeline, self.writer, max_body_bytes=self.settings.http_max_body_bytes,
                             health=self.health)
            config = uvicorn.Config(app, host=self.settings.http_host, port=self.http_port,
                                    log_level="warning", lifespan="off", access_log=False)
            self._server = uvicorn.Server(config)
            self._server_thread = threading.Thread(target=self._server.run, name="pulse-http", daemon=True)
            self._server_thread.start()
            deadline = time.monotonic() + 10
            while not self._server.started and time.monotonic() < deadline:
                if not self._server_thread.is_alive():
                    raise RuntimeError(f"HTTP server could not start on port {self.http_port}")
                time.sleep(0.02)
        log.info("ingest started", mqtt=self.mqtt is not None, http_port=self.http_port)

    def stop(self) -> None:
        """Stop taking input, commit and acknowledge what was taken, then disconnect."""
        if self.mqtt is not None:
            self.mqtt.pause()
        if self.shards is not None:
            self.shards.pause()
        if self._server is not None:
            self._server.should_exit = True
            self._server_thread.join(10)
        self.writer.stop()
        if self.mqtt is not None:
            self.mqtt.stop()
        self.directory.stop()
        for listener in self.listeners:
            if hasattr(listener, "stop"):
                listener.stop()
        if self.shards is not None:  # last: the shard locks are held until the engines are saved
            self.shards.close()
        log.info("ingest stopped", inserted=self.writer.totals.inserted, duplicates=self.writer.totals.duplicates,
                 quarantined=self.writer.totals.quarantined)

    def run_until_signalled(self, duration_s: float | None = None) -> None:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.start()
        stop.wait(duration_s)
        self.stop()
