"""`pulse up` / `pulse down` / `pulse status` against the real services: the supervisor
daemon, `pulse ingest` (HTTP), `pulse notify`, `pulse app` (Streamlit), Dagster."""

from __future__ import annotations

import json
import os
import signal
import socket
from datetime import timedelta
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from pulse import envelope, registry
from pulse.simulator import utcnow
from pulse.supervisor import RestartPolicy, select, services_status
from tests.helpers import count, free_port, run_pulse, wait_until


def _services(env, cli: bool = False) -> dict:
    """The services as `pulse status --json` shows them (``cli``), or read in-process (fast polling)."""
    if cli:
        out = run_pulse("status", "--json", env=env)
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)["supervisor"]
    else:
        data = services_status(Path(env["PULSE_HOME"]))
    return {s["name"]: s for s in (data or {}).get("services", [])}


def _tree(pids) -> list[psutil.Process]:
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            procs += [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return procs


def _alive(procs) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture
def deployment(pg_url, pulse_env):
    """Environment for `pulse up` with its own PULSE_HOME and free ports; always brought down."""
    env = {"PULSE_HOME": str(pulse_env / "home"), "PULSE_DATABASE_URL": pg_url, "PULSE_HTTP_PORT": str(free_port()),
           "PULSE_APP_PORT": str(free_port()), "PULSE_DAGSTER_PORT": str(free_port()), "PULSE_STOP_TIMEOUT_S": "10",
           "PULSE_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}"}  # nothing listens there: MQTT off
    yield env
    run_pulse("down", env=env, timeout=60)
    state = pulse_env / "home" / "run" / "state.json"
    if state.exists():  # belt and braces: nothing of this test may outlive it
        for svc in json.loads(state.read_text())["services"].values():
            if svc.get("pid") and psutil.pid_exists(svc["pid"]):
                os.killpg(svc["pid"], signal.SIGKILL)


def test_select_and_restart_policy():
    assert select(None) == ["ingest", "notify", "dagster-webserver", "dagster-daemon", "app"]
    assert select("app, dagster") == ["dagster-webserver", "dagster-daemon", "app"]
    policy = RestartPolicy(initial_s=1, max_s=60)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 7, 20)] == [1, 2, 4, 8, 60, 60]


def test_up_status_restart_down(deployment, pg_url):
    env = deployment
    home = env["PULSE_HOME"]
    up = run_pulse("up", "--only", "ingest,notify,app", env=env, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"http://127.0.0.1:{env['PULSE_HTTP_PORT']}/v1/telemetry" in up.stdout
    assert f"http://127.0.0.1:{env['PULSE_APP_PORT']}" in up.stdout
    assert "no MQTT broker reachable" in up.stderr and "HTTP ingest only" in up.stderr

    services = _services(env, cli=True)
    assert set(services) == {"ingest", "notify", "app"}
    assert all(s["state"] == "running" and s["restarts"] == 0 and psutil.pid_exists(s["pid"])
               for s in services.values())
    text = run_pulse("status", env=env)
    assert text.returncode == 0 and "supervisor pid" in text.stdout and "telemetry_rows" in text.stdout

    again = run_pulse("up", env=env)
    assert again.returncode == 0 and "already up" in again.stdout

    # a real device posts real telemetry to the supervised ingest
    with psycopg.connect(pg_url) as conn:
        registry.upsert_tenant(conn, "sup", "Supervised")
        token = registry.add_device(conn, registry.Device("sup", "pump-1", None, "pump")).token

    def post(seconds_ago: int) -> int:
        body = envelope.encode("pump-1", utcnow() - timedelta(seconds=seconds_ago), {"temp_c": 21.5})
        r = httpx.post(f"http://127.0.0.1:{env['PULSE_HTTP_PORT']}/v1/telemetry", content=body,
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
        return r.status_code

    assert post(2) == 202
    assert count(pg_url, "select count(*) from telemetry where device_id = 'pump-1'") == 1
    assert httpx.get(f"http://127.0.0.1:{env['PULSE_APP_PORT']}/_stcore/health", timeout=5).status_code == 200

    # kill -9 a child: the supervisor restarts it and counts the restart
    old = services["ingest"]["pid"]
    os.kill(old, signal.SIGKILL)
    restarted = wait_until(lambda: (s := _services(env)["ingest"])["restarts"] == 1 and s["state"] == "running"
                           and s, timeout=30, interval=0.3, message="ingest restarted")
    assert restarted["pid"] != old and restarted["last_exit"] == -9
    assert post(1) == 202
    assert count(pg_url, "select count(*) from telemetry where device_id = 'pump-1'") == 2

    procs = _tree(s["pid"] for s in _services(env).values())
    assert any("streamlit" in " ".join(p.cmdline()) for p in procs)  # `pulse app`'s own child is tracked too
    down = run_pulse("down", env=env, timeout=60)
    assert down.returncode == 0 and "Pulse is down" in down.stdout, down.stderr
    assert _alive(procs) == []
    assert _services(env, cli=True) == {}
    for name in ("ingest", "notify", "app", "supervisor"):
        assert os.path.exists(os.path.join(home, "logs", f"{name}.log")), name
    logs = {name: open(os.path.join(home, "logs", f"{name}.log")).read() for name in ("ingest", "app", "notify")}
    assert "restart 1" in logs["ingest"] and "ingest started" in logs["ingest"]
    assert "supervisor: starting app" in logs["app"]

    again = run_pulse("down", env=env)
    assert again.returncode == 0 and "not running" in again.stdout


def test_user_mistakes_are_clear_messages(deployment):
    env = deployment
    bad = run_pulse("up", "--only", "ingest,kafka", env=env)
    assert bad.returncode == 2 and "unknown service 'kafka'" in bad.stderr and "Traceback" not in bad.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", int(env["PULSE_HTTP_PORT"])))
        busy.listen()
        out = run_pulse("up", "--only", "ingest", env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"cannot listen on 127.0.0.1:{env['PULSE_HTTP_PORT']}: in use (set PULSE_HTTP_PORT)" in out.stderr
    assert run_pulse("down", env=env).stdout.startswith("Pulse is not running")


def test_dagster_and_mqtt_then_a_killed_supervisor(deployment, mqtt_url, unique):
    from ingest.mqtt import drop_session

    env = {**deployment, "PULSE_MQTT_URL": mqtt_url, "PULSE_MQTT_CLIENT_ID": f"sup{unique}",
           "PULSE_MQTT_SHARE_GROUP": f"sup{unique}", "PULSE_MQTT_SESSION_EXPIRY_S": "60"}
    try:
        up = run_pulse("up", "--only", "ingest,dagster", env=env, timeout=150)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{env['PULSE_DAGSTER_PORT']}" in up.stdout and "MQTT off" not in up.stderr
        services = _services(env)
        assert {n: s["state"] for n, s in services.items()} == {
            "ingest": "running", "dagster-webserver": "running", "dagster-daemon": "running"}
        health = httpx.get(f"http://127.0.0.1:{env['PULSE_HTTP_PORT']}/healthz", timeout=5).json()
        assert health["mqtt_connected"] is True
        assert httpx.get(f"http://127.0.0.1:{env['PULSE_DAGSTER_PORT']}/server_info", timeout=5).status_code == 200
        dagster_home = os.path.join(env["PULSE_HOME"], "dagster", "dagster.yaml")
        assert "enabled: false" in open(dagster_home).read()

        # the supervisor itself dies hard: its services are reported and `pulse down` still stops them
        procs = _tree(s["pid"] for s in services.values())
        supervisor_pid = int(open(os.path.join(env["PULSE_HOME"], "run", "supervisor.pid")).read())
        os.kill(supervisor_pid, signal.SIGKILL)
        wait_until(lambda: not _alive([psutil.Process(supervisor_pid)]) if psutil.pid_exists(supervisor_pid)
                   else True, timeout=10, message="supervisor gone")
        status = run_pulse("status", env=env)
        assert "supervisor is gone" in status.stderr and "`pulse down` stops them" in status.stderr
        refused = run_pulse("up", env=env)
        assert refused.returncode == 2 and "run `pulse down` first" in refused.stderr
        down = run_pulse("down", env=env, timeout=60)
        assert down.returncode == 0 and "left behind" in down.stdout, down.stdout + down.stderr
        assert _alive(procs) == []
    finally:
        drop_session(mqtt_url, f"sup{unique}-{socket.gethostname()}")
