"""The README's "Connecting a real device" commands work as printed (only the HTTP port
is swapped for a free one): mosquitto_pub and curl against a real `pulse ingest`."""

from __future__ import annotations

import os
import re
import subprocess
import time

import psycopg

from pulse import registry
from tests.helpers import REPO, count, free_port, ingest_process, wait_until


def readme_commands() -> tuple[str, str]:
    text = (REPO / "README.md").read_text()
    section = text.split("### Connecting a real device", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    mqtt = next(b for b in blocks if b.startswith("mosquitto_pub"))
    http = next(b for b in blocks if b.startswith("curl"))
    return mqtt, http


def test_readme_device_examples_store_telemetry(pg_url, mqtt_url, unique):
    with psycopg.connect(pg_url) as conn:
        registry.upsert_tenant(conn, "acme", "Acme Water")
        registry.upsert_site(conn, "acme", "berlin-1", "Berlin plant")
        token = registry.add_device(conn, registry.Device("acme", "pump-0001", "berlin-1", "pump")).token
    mqtt_cmd, http_cmd = readme_commands()
    port = free_port()
    with ingest_process(pg_url, mqtt_url=mqtt_url, worker_id=f"readme{unique}", share_group=f"g{unique}",
                        http_port=port):
        env = {**os.environ, "TOKEN": token}
        subprocess.run(["bash", "-c", mqtt_cmd], check=True, env=env, timeout=30)
        wait_until(lambda: count(pg_url, "select count(*) from telemetry where device_id = 'pump-0001'") == 1,
                   message="the mosquitto_pub reading stored")
        time.sleep(1.1)  # both examples stamp the current second: keep the second reading distinct
        out = subprocess.run(["bash", "-c", http_cmd.replace("127.0.0.1:8080", f"127.0.0.1:{port}")],
                             check=True, env=env, timeout=30, capture_output=True, text=True).stdout
        assert '"accepted":1' in out.replace(" ", ""), out
        assert count(pg_url, "select count(*) from telemetry where device_id = 'pump-0001'") == 2  # 202 after commit
    assert count(pg_url, "select count(*) from quarantine") == 0
