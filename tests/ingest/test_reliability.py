"""Crash and outage tests against real processes and real servers."""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from ingest.mqtt import drop_session
from pulse import db, envelope, registry
from pulse.simulator import utcnow
from tests.helpers import count, free_port, ingest_process, wait_until
from tests.ingest.mqttpub import Publisher

pytestmark = pytest.mark.slow


def _tenant(url, tenant):
    with psycopg.connect(url) as conn:
        registry.upsert_tenant(conn, tenant, "Reliability")
        for d in ("r1", "r2"):
            registry.upsert_device(conn, registry.Device(tenant, d))


def _publish_stream(pub, tenant, n, start_key=0, pause_every=0, pause=0.0):
    base = utcnow() - timedelta(hours=1)
    for i in range(start_key, start_key + n):
        dev = "r1" if i % 2 else "r2"
        # one metric per message, a unique timestamp per message: rows == messages
        body = envelope.encode(dev, base + timedelta(milliseconds=i), {"v": float(i)}, seq=i)
        pub.publish(f"pulse/v1/{tenant}/{dev}/telemetry", body, i)
        if pause_every and i % pause_every == 0:
            time.sleep(pause)


def _stored_keys(url, tenant):
    with psycopg.connect(url) as conn:
        rows = conn.execute("select value from telemetry where tenant_id = %s", (tenant,)).fetchall()
    return [int(r[0]) for r in rows]


def test_kill_9_mid_stream_loses_nothing_and_stores_once(pg_url, mqtt_url, unique):
    tenant = f"k{unique}"
    _tenant(pg_url, tenant)
    worker, group = f"kill-{unique}", f"g{unique}"
    port = free_port()
    pub = Publisher(mqtt_url, f"pub-{unique}")
    total = 6000
    try:
        with ingest_process(pg_url, mqtt_url=mqtt_url, worker_id=worker, share_group=group,
                            http_port=port) as proc:
            time.sleep(0.5)  # subscribed (the session exists from here on)
            _publish_stream(pub, tenant, 3000, pause_every=100, pause=0.01)
            wait_until(lambda: count(pg_url, "select count(*) from telemetry where tenant_id=%s", (tenant,)) > 500,
                       message="ingest under way")
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        # the worker is dead: the broker queues the rest for its persistent session
        _publish_stream(pub, tenant, total - 3000, start_key=3000)
        pub.wait_acked(total)
        assert len(pub.acked) == total
        with ingest_process(pg_url, mqtt_url=mqtt_url, worker_id=worker, share_group=group, http_port=port):
            wait_until(lambda: count(pg_url, "select count(*) from telemetry where tenant_id=%s", (tenant,)) >= total,
                       timeout=60, message="backlog stored")
            time.sleep(1.0)  # anything redelivered late must not add rows
        keys = _stored_keys(pg_url, tenant)
        assert len(keys) == len(set(keys)) == total  # exactly once
        assert set(keys) == pub.acked
    finally:
        pub.close()
        drop_session(mqtt_url, f"pulse-ingest-{worker}")


# ------------------------------------------------------------------ a private PostgreSQL to restart

PG_BIN = Path("/usr/lib/postgresql") / (sorted(os.listdir("/usr/lib/postgresql"))[-1] if os.path.isdir(
    "/usr/lib/postgresql") else "15") / "bin"


def _as_postgres(*args, **kw):
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, text=True, **kw)


@pytest.fixture
def private_pg():
    """A throwaway TimescaleDB cluster on its own port, so restarting it disturbs nobody."""
    if os.geteuid() != 0 or not (PG_BIN / "initdb").exists():
        pytest.skip("needs root and Debian's PostgreSQL server binaries (scripts/services.sh)")
    data = Path(tempfile.mkdtemp(prefix="pulse-pg-"))
    shutil.chown(data, "postgres")
    port = free_port()
    _as_postgres(str(PG_BIN / "initdb"), "-D", str(data / "d"), "-A", "trust", "-U", "postgres")
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c shared_preload_libraries=timescaledb " \
           "-c timescaledb.telemetry_level=off -c fsync=off"

    def ctl(action):
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data / "d"), "-o", opts, "-w", "-l", str(data / "log"),
                     "-m", "fast", action, timeout=60)

    ctl("start")
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    db.migrate(url)
    yield url, ctl
    try:
        ctl("stop")
    finally:
        shutil.rmtree(data, ignore_errors=True)


def test_postgres_restart_during_ingest_loses_nothing(private_pg, mqtt_url, unique):
    url, ctl = private_pg
    tenant = f"p{unique}"
    _tenant(url, tenant)
    worker, group = f"pgr-{unique}", f"g{unique}"
    pub = Publisher(mqtt_url, f"pub-{unique}")
    total = 4000
    try:
        with ingest_process(url, mqtt_url=mqtt_url, worker_id=worker, share_group=group, http_port=free_port()) as proc:
            time.sleep(0.5)
            _publish_stream(pub, tenant, 2000, pause_every=50, pause=0.01)
            ctl("restart")  # the writer's connection breaks mid-stream
            _publish_stream(pub, tenant, total - 2000, start_key=2000, pause_every=50, pause=0.01)
            pub.wait_acked(total)
            wait_until(lambda: count(url, "select count(*) from telemetry where tenant_id=%s", (tenant,)) >= total,
                       timeout=60, message="all rows after the restart")
            assert proc.poll() is None  # it resumed by itself
        keys = _stored_keys(url, tenant)
        assert len(keys) == len(set(keys)) == total
    finally:
        pub.close()
        drop_session(mqtt_url, f"pulse-ingest-{worker}")
