"""Helpers for tests that run Pulse services in-process or as real subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def count(url: str, sql: str, params=()) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchone()[0]


def run_pulse(*args: str, env: dict | None = None, timeout: float = 120, input: str | None = None):
    """Run the real `pulse` console script; returns CompletedProcess with text output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "pulse.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=REPO, input=input)


@contextmanager
def ingest_process(db_url: str, *, mqtt_url: str | None, worker_id: str, share_group: str,
                   http_port: int | None = None, extra_env: dict | None = None):
    """`pulse ingest` as a real subprocess (for kill -9 and restart tests)."""
    env = {**os.environ, "PULSE_DATABASE_URL": db_url, "PULSE_MQTT_SHARE_GROUP": share_group,
           "PULSE_MQTT_SESSION_EXPIRY_S": "600", **(extra_env or {})}
    args = [sys.executable, "-m", "pulse.cli", "ingest", "--worker-id", worker_id,
            "--mqtt", mqtt_url or "off", "--http-port", str(http_port or 0)]
    log = tempfile.NamedTemporaryFile(prefix=f"ingest-{worker_id}-", suffix=".log", delete=False)
    proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = log.name
    try:
        if http_port:
            wait_until(lambda: _healthy(http_port), timeout=30, message="ingest /healthz")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code in (200, 503)
    except httpx.HTTPError:
        return False
