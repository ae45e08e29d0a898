"""`pulse oncall who/export`, `pulse notify --once` and error handling of the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alerting.notify_cli import deliveries_app, oncall_app
from pulse.errors import UserError
from tests.alerting.notify.conftest import apply_yaml, hook, q, raise_event

pytestmark = pytest.mark.timescale

SCHEDULE = """users: [{id: alice}, {id: bob}, {id: carol}]
schedules:
  - id: primary
    name: Primary
    time_zone: Europe/Berlin
    layers:
      - name: weekly
        users: [alice, bob]
        rotation: 7d
        start: 2026-01-05T09:00:00
    overrides:
      - {user: carol, start: 2026-03-10T12:00:00, end: 2026-03-10T18:00:00}
"""


def test_oncall_who_from_applied_config(db):
    apply_yaml(db, SCHEDULE)
    run = CliRunner()
    r = run.invoke(oncall_app, ["who", "--schedule", "primary", "--at", "2026-01-05T09:30:00+01:00", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["user"] == "alice"
    # 09:00 Berlin on Monday 12 Jan is the handoff to bob; a minute before it is still alice.
    assert "bob is on call" in run.invoke(oncall_app, ["who", "--schedule", "primary", "--at",
                                                       "2026-01-12T08:00:00Z"]).output
    assert "alice is on call" in run.invoke(oncall_app, ["who", "--schedule", "primary", "--at",
                                                         "2026-01-12T07:59:00Z"]).output
    override = run.invoke(oncall_app, ["who", "--schedule", "primary", "--at", "2026-03-10T13:00:00+01:00", "--json"])
    assert json.loads(override.output)["user"] == "carol"
    bad = run.invoke(oncall_app, ["who", "--schedule", "nope"])
    assert isinstance(bad.exception, UserError) and "unknown schedule 'nope'" in str(bad.exception)


def test_oncall_export_ical(db, tmp_path):
    apply_yaml(db, SCHEDULE)
    out = tmp_path / "primary.ics"
    r = CliRunner().invoke(oncall_app, ["export", "--schedule", "primary", "--ical", "--from", "2026-01-05T00:00:00Z",
                                        "--to", "2026-01-26T00:00:00Z", "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert text.startswith("BEGIN:VCALENDAR") and text.rstrip().endswith("END:VCALENDAR")
    assert text.count("BEGIN:VEVENT") == 4  # alice, bob, alice, then the partial week's bob
    assert "alice" in text and "bob" in text
    no_format = CliRunner().invoke(oncall_app, ["export", "--schedule", "primary"])
    assert isinstance(no_format.exception, UserError)
    backwards = CliRunner().invoke(oncall_app, ["export", "--schedule", "primary", "--ical", "--from",
                                                "2026-02-01T00:00:00Z", "--to", "2026-01-01T00:00:00Z"])
    assert "--to must be after --from" in str(backwards.exception)


def test_deliveries_usage_errors(db):
    r = CliRunner().invoke(deliveries_app, ["list", "--status", "lost"])
    assert isinstance(r.exception, UserError) and "--status must be one of" in str(r.exception)
    r = CliRunner().invoke(deliveries_app, ["retry"])
    assert isinstance(r.exception, UserError)
    r = CliRunner().invoke(deliveries_app, ["retry", "999"])
    assert "no delivery with id 999" in str(r.exception)


def test_pulse_notify_once_and_exit_code_through_real_cli(db, receivers):
    recv = receivers()
    apply_yaml(db, "channels:\n" + hook("hook", recv) + "routes:\n  - id: all\n    channels: [hook]\n")
    raise_event(db)
    env = {**os.environ, "PULSE_DATABASE_URL": db, "T_HOOK_KEY": "sekret-signing-key-42"}
    pulse = [str(Path(sys.executable).parent / "pulse")]
    done = subprocess.run(pulse + ["notify", "--once", "--worker-id", "cli-test"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["sent"] == 1
    assert len(recv.requests) == 1
    assert q(db, "select worker_id from delivery_attempts") == [("cli-test",)]
    assert "sekret-signing-key-42" not in done.stderr + done.stdout  # structured logs, no secrets
    err = subprocess.run(pulse + ["oncall", "who", "--schedule", "missing"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert err.returncode == 2
    assert "unknown schedule 'missing'" in err.stderr and "Traceback" not in err.stderr
