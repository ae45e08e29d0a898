"""The real `pulse` CLI: backtest over stored history equals the live engine; bad rule
files are rejected with their YAML path and nothing is stored; user errors exit 2."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.alerting.service.conftest import apply_config, fleet_yaml, now, rows, wait_rows
from tests.helpers import run_pulse

pytestmark = pytest.mark.timescale

RULES = """
  - {id: hot, kind: threshold, metric: temp_c, op: ">", value: 80, clear: 70}
  - {id: avg, kind: window, metric: temp_c, agg: avg, window: 20s, op: ">", value: 60, for: 5s}
"""


def test_backtest_cli_on_stored_history_matches_live(stack, pg_url, unique, tmp_path):
    tenant = f"t{unique}"
    tokens = apply_config(pg_url, fleet_yaml(tenant, RULES))
    s = stack()
    base = now() - timedelta(minutes=5)
    values = [20, 85, 90, 75, 72, 65, 95, 40, 30, 85, 86, 88, 20, 10, 90, 91, 92, 93, 10, 10]
    s.post(tokens["d1"], "d1", [(base + timedelta(seconds=3 * i), {"temp_c": float(v)}) for i, v in enumerate(values)])
    s.post(tokens["d2"], "d2", [(base + timedelta(seconds=4 * i), {"temp_c": float(100 - v)}) for i, v in enumerate(values)])
    wait_rows(pg_url, "select 1 from telemetry where tenant_id = %s", (tenant,), n=40)
    end = now()
    s.stop()
    live = rows(pg_url, "select e.alert_id, e.from_state, e.to_state, e.at from alert_events e join alerts a "
                        "using (alert_id) where a.tenant_id = %s order by e.at, e.event_id", (tenant,))
    assert len(live) >= 6
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text("rules:\n" + RULES)
    r = run_pulse("rules", "backtest", "--rule", str(rule_file), "--from", base.isoformat(), "--to", end.isoformat(),
                  "--tenant", tenant, "--json", "--transitions", env={"PULSE_DATABASE_URL": pg_url})
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    replayed = sorted(((t["alert_id"], t["from_state"], t["to_state"], t["at"]) for t in report["transitions"]),
                      key=lambda x: x[3])
    assert [(a, f, t, at.isoformat()) for a, f, t, at in live] == replayed
    per = {p["rule_id"]: p for p in report["per_rule"]}
    assert per["hot"]["alerts_fired"] == rows(pg_url, "select count(*) from alerts where tenant_id = %s and "
                                                      "rule_id = 'hot'", (tenant,))[0][0]
    assert report["readings"] == 40 and report["pages_per_day"] > 0


@pytest.mark.parametrize("rule, path, message", [
    ('{id: r1, kind: threshold, metric: t, op: "=>", value: 1}', "rules[1].op", "Input should be"),
    ("{id: r1, kind: absence, duration: -5s}", "rules[1].duration", "must not be negative"),
    ("{id: r1, kind: composite, mode: all, conditions: [{kind: rule, rule: r2}]}\n"
     "  - {id: r2, kind: composite, mode: any, conditions: [{kind: rule, rule: r1}]}",
     "conditions[0].rule (line 10)", "reference cycle r1 -> r2"),
])
def test_bad_rule_yaml_rejected_with_path_and_nothing_stored(pg_url, unique, tmp_path, rule, path, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(fleet_yaml(f"t{unique}", "  - {id: ok, kind: threshold, metric: t, op: '>', value: 1}\n  - " + rule))
    r = run_pulse("config", "apply", str(cfg), env={"PULSE_DATABASE_URL": pg_url})
    assert r.returncode == 2, r.stdout + r.stderr
    err = " ".join(r.stderr.split())  # rich wraps long lines
    assert "rules[1]" in err and path in err and message in err and "Traceback" not in err
    assert rows(pg_url, "select count(*) from config_objects") == [(0,)]
    assert rows(pg_url, "select count(*) from tenants") == [(0,)]
    v = run_pulse("rules", "validate", str(cfg), env={"PULSE_DATABASE_URL": pg_url})
    assert v.returncode == 2 and path.split(" ")[0] in " ".join(v.stderr.split())


def test_cli_alert_actions_and_user_errors(pg_url, unique):
    env = {"PULSE_DATABASE_URL": pg_url, "PULSE_USER": "carol"}
    r = run_pulse("alerts", "ack", "nope/nope/nope", env=env)
    assert r.returncode == 2 and "no open alert" in r.stderr and "Traceback" not in r.stderr
    r = run_pulse("silences", "add", "--tenant", "acme", "--cron", "61 * * * *", "--duration", "1h", env=env)
    assert r.returncode == 2 and "cron" in r.stderr
    r = run_pulse("silences", "add", "--tenant", "acme", "--from", "+1d", "--for", "2h", "--json", env=env)
    assert r.returncode == 0, r.stderr
    sid = json.loads(r.stdout)["silence_id"]
    assert json.loads(run_pulse("silences", "list", "--json", env=env).stdout)[0]["created_by"] == "carol"
    assert run_pulse("silences", "expire", str(sid), env=env).returncode == 0
    again = run_pulse("silences", "expire", str(sid), env=env)
    assert again.returncode == 2 and "already expired" in again.stderr
    r = run_pulse("alerts", "resolve", "x", "--reason", "bored", env=env)
    assert r.returncode == 2 and "real_fault" in r.stderr
