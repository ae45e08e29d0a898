"""The `pulse` command as a user drives it: real subprocesses, real servers."""

import json
import os
import tempfile
from pathlib import Path

import psycopg
import pytest

from tests.helpers import run_pulse

CONFIG = """
tenants:
  - id: acme
    sites: [{id: plant-1, name: Plant 1, location: {lat: 52.5, lon: 13.4}}]
    devices:
      - {id: pump-1, site: plant-1, type: pump}
"""


def env_for(url):
    return {"PULSE_DATABASE_URL": url}


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_config_and_device_commands(pg_url, tmp_path):
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(CONFIG)
    out = run_pulse("config", "apply", str(cfg), "--tokens-out", str(tmp_path / "tokens.csv"), env=env_for(pg_url))
    assert out.returncode == 0, out.stderr
    assert "1 device(s)" in out.stdout
    tokens = (tmp_path / "tokens.csv").read_text().splitlines()
    assert tokens[0] == "tenant_id,device_id,token" and tokens[1].startswith("acme,pump-1,pt_")
    assert oct((tmp_path / "tokens.csv").stat().st_mode & 0o777) == "0o600"

    added = run_pulse("devices", "add", "pump-2", "--tenant", "acme", "--site", "plant-1", "--tag", "fw=2",
                      env=env_for(pg_url))
    assert added.returncode == 0 and "pt_" in added.stdout
    csv = tmp_path / "more.csv"
    csv.write_text("device_id,site_id,device_type,tags\nm-1,plant-1,meter,zone=a\nm-2,,meter,\n")
    imported = run_pulse("devices", "import", str(csv), "--tenant", "acme", env=env_for(pg_url))
    assert imported.returncode == 0 and "2 device(s) imported, 2 new" in imported.stdout
    rotated = run_pulse("devices", "rotate-token", "m-1", "--tenant", "acme", env=env_for(pg_url))
    assert rotated.returncode == 0 and "pt_" in rotated.stdout
    listed = json.loads(run_pulse("devices", "list", "--tenant", "acme", "--json", env=env_for(pg_url)).stdout)
    assert sorted(d["device_id"] for d in listed) == ["m-1", "m-2", "pump-1", "pump-2"]
    schema = json.loads(run_pulse("config", "schema").stdout)
    assert {"tenants", "rules", "channels", "routes"} <= set(schema["properties"])


def test_user_mistakes_get_one_clear_line_and_exit_2(pg_url, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace("lat: 52.5", "lat: 152.5"))
    assert_user_error(run_pulse("config", "apply", str(bad), env=env_for(pg_url)),
                      "tenants[0].sites[0].location.lat (line 4)")
    assert_user_error(run_pulse("config", "apply", str(tmp_path / "missing.yaml"), env=env_for(pg_url)),
                      "cannot read")
    assert_user_error(run_pulse("devices", "add", "x", "--tenant", "nobody", env=env_for(pg_url)),
                      "tenant 'nobody' does not exist")
    csv = tmp_path / "bad.csv"
    csv.write_text("device_id\nok\nnot ok\n")
    assert_user_error(run_pulse("devices", "import", str(csv), "--tenant", "acme", env=env_for(pg_url)),
                      "line 3, column device_id")
    assert_user_error(run_pulse("db", "migrate", env={"PULSE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"}),
                      "cannot connect to PostgreSQL")
    assert_user_error(run_pulse("simulate", "--transport", "carrier-pigeon", env=env_for(pg_url)),
                      "--transport must be mqtt or http")


def test_quarantine_list_shows_reasons(pg_url):
    with psycopg.connect(pg_url) as conn:
        conn.execute("insert into quarantine (transport, reason, detail, payload) values "
                     "('mqtt', 'bad_json', 'JSON is malformed', 'garbage'), ('http', 'schema', 'x', '{}')")
    out = run_pulse("quarantine", "list", "--json", env=env_for(pg_url))
    data = json.loads(out.stdout)
    assert data["counts"] == {"bad_json": 1, "schema": 1}
    assert {i["payload_preview"] for i in data["items"]} == {"garbage", "{}"}


def test_embedded_default_without_database_url(tmp_path):
    """PULSE_DATABASE_URL unset → the embedded PostgreSQL under PULSE_HOME serves."""
    home = Path(tempfile.mkdtemp(prefix="pulse-home-"))
    home.chmod(0o755)  # the embedded server runs as an unprivileged user when we are root
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env["PULSE_HOME"] = str(home)
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(CONFIG)
    try:
        import subprocess
        import sys

        def pulse(*args):
            return subprocess.run([sys.executable, "-m", "pulse.cli", *args], env=env, capture_output=True,
                                  text=True, timeout=120)

        migrated = pulse("db", "migrate")
        assert migrated.returncode == 0, migrated.stderr
        assert "plain tables + BRIN" in migrated.stdout
        assert pulse("config", "apply", str(cfg)).returncode == 0
        status = json.loads(pulse("status", "--json").stdout)
        assert status["store"].startswith("postgresql (embedded") and status["devices"] == 1
        assert (home / "pg" / "PG_VERSION").exists()
    finally:
        pulse("db", "stop")
        import shutil

        shutil.rmtree(home, ignore_errors=True)


def test_unmigrated_database_is_a_clear_error(tmp_path):
    import uuid

    from tests.conftest import ADMIN_URL

    name = f"pulse_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    try:
        url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        assert_user_error(run_pulse("devices", "list", env=env_for(url)), "run `pulse db migrate` first")
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{name}" with (force)')
