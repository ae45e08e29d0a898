"""`pulse demo --headless` end to end against the real servers: history, Dagster assets,
live ingest, alerts, deliveries to the local sinks, SLA reports."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, free_port

pytestmark = pytest.mark.slow


def test_headless_demo_runs_the_whole_pipeline(pg_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env.update({"PULSE_DATABASE_URL": pg_url, "PULSE_HOME": str(tmp_path / "home"),
                "PULSE_HTTP_PORT": str(free_port())})
    out = subprocess.run([sys.executable, "-m", "pulse.cli", "demo", "--headless", "--duration", "30",
                          "--devices", "12", "--history-days", "1", "--json"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["rows_backfilled"] > 0 and summary["rows_ingested"] > 0
    assert summary["alerts_fired"] >= 1 and "pump-overheat" in summary["alerts_by_rule"]
    assert summary["notifications_delivered"] >= 1 and summary["notifications_dead"] == 0
    assert summary["webhook_requests_received"] >= 1
    assert summary["assets_materialized"] >= 3
    assert set(summary["sla"]) == {"acme", "globex"}
    assert all(0 <= s["availability_pct"] <= 100 for s in summary["sla"].values())
    assert (tmp_path / "home" / "reports" / "acme").is_dir()
