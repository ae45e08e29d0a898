"""Restart, rule edits, operator actions, silences and late readings on the live service."""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg
import pytest

from alerting import api
from alerting.silences import matcher_from_options, add_silence
from tests.alerting.service.conftest import apply_config, fleet_yaml, now, rows, wait_rows
from tests.helpers import wait_until

pytestmark = pytest.mark.timescale


def test_restart_continues_pending_for_timer_and_rebuilds_windows(stack, pg_url, unique):
    tenant = f"t{unique}"
    tokens = apply_config(pg_url, fleet_yaml(tenant, """
  - {id: held, kind: threshold, metric: temp_c, op: ">", value: 80, for: 2s, target: {devices: [d1]}}
  - {id: burst, kind: window, metric: p, agg: count, window: 10m, op: ">=", value: 3, target: {devices: [d2]}}
"""))
    s1 = stack()
    breach_at = now()
    s1.post(tokens["d1"], "d1", breach_at, temp_c=95.0)
    s1.post(tokens["d2"], "d2", [(breach_at - timedelta(seconds=30), {"p": 1.0}), (breach_at, {"p": 1.0})])
    wait_rows(pg_url, "select 1 from alerts where tenant_id = %s and state = 'pending'", (tenant,),
              message="pending alert")
    s1.stop()  # saves the snapshot (without window buffers)
    assert rows(pg_url, "select count(*) from alerts where tenant_id = %s and state = 'firing'", (tenant,)) == [(0,)]
    snap = rows(pg_url, "select snapshot from engine_snapshots where partition_key = %s", (tenant,))[0][0]
    assert all("windows" not in d for d in snap["devices"])

    s2 = stack()
    got = wait_rows(pg_url, "select e.at from alerts a join alert_events e using (alert_id) where a.tenant_id = %s "
                            "and a.rule_id = 'held' and e.to_state = 'firing'", (tenant,), timeout=5,
                    message="'for' fires after restart")
    # fired at its deadline (breach + 2 s), carried over by the snapshot
    assert abs((got[0][0] - breach_at).total_seconds() - 2.0) < 0.01
    # one more reading completes the count of 3 only if the window was rebuilt from telemetry
    s2.post(tokens["d2"], "d2", now(), p=1.0)
    wait_rows(pg_url, "select 1 from alerts where tenant_id = %s and rule_id = 'burst' and state = 'firing'",
              (tenant,), message="window alert with rebuilt window")
    # the restart replayed nothing twice
    assert rows(pg_url, "select count(*) from alert_events e join alerts a using (alert_id) "
                        "where a.tenant_id = %s and a.rule_id = 'held'", (tenant,)) == [(2,)]


def test_rule_edit_keeps_alert_state(stack, pg_url, unique):
    tenant = f"t{unique}"
    tokens = apply_config(pg_url, fleet_yaml(tenant, """
  - {id: hot, kind: threshold, metric: temp_c, op: ">", value: 50}
"""))
    s = stack()
    s.post(tokens["d1"], "d1", now(), temp_c=100.0)
    alert_id = wait_rows(pg_url, "select alert_id from alerts where tenant_id = %s and state = 'firing'",
                         (tenant,))[0][0]
    apply_config(pg_url, fleet_yaml(tenant, """
  - {id: hot, kind: threshold, metric: temp_c, op: ">", value: 60, severity: critical}
"""))
    # LISTEN pulse_config (trigger on config_objects) → update_rules; the alert survives
    wait_until(lambda: s.alerts.call(lambda: s.alerts.engines[tenant].rules[0].value) == 60, timeout=3,
               message="rule edit reached the engine")
    fp = f"{tenant}/hot/d1"
    assert s.alerts.call(lambda: s.alerts.engines[tenant].alert(fp).alert_id) == alert_id
    s.post(tokens["d1"], "d1", now(), temp_c=55.0)  # breaching the old rule, clear under the new one
    wait_rows(pg_url, "select 1 from alerts where alert_id = %s and state = 'resolved'", (alert_id,),
              message="resolved under the edited rule")
    assert [r[0] for r in rows(pg_url, "select to_state from alert_events where alert_id = %s order by event_id",
                               (alert_id,))] == ["firing", "resolved"]


def test_ack_via_api_reaches_engine_and_rebreach_semantics(stack, pg_url, unique):
    tenant = f"t{unique}"
    tokens = apply_config(pg_url, fleet_yaml(tenant, """
  - {id: hot, kind: threshold, metric: temp_c, op: ">", value: 50}
"""))
    s = stack()
    s.post(tokens["d1"], "d1", now(), temp_c=100.0)
    alert_id = wait_rows(pg_url, "select alert_id from alerts where tenant_id = %s", (tenant,))[0][0]
    with psycopg.connect(pg_url) as conn:  # "another process": only the database connects us
        ev = api.acknowledge(conn, f"{tenant}/hot/d1", user="alice", comment="on it")
        with pytest.raises(Exception, match="already acknowledged"):
            api.acknowledge(conn, alert_id, user="bob")
    assert ev["to_state"] == "acknowledged" and ev["notify"]
    fp = f"{tenant}/hot/d1"
    wait_until(lambda: s.alerts.call(lambda: s.alerts.engines[tenant].alert(fp).state.value) == "acknowledged",
               timeout=3, message="ack reached the engine")
    # re-breach while acknowledged: same alert, no new transition, no new page
    s.post(tokens["d1"], "d1", now(), temp_c=101.0)
    time.sleep(0.3)
    assert rows(pg_url, "select action, actor, to_state from alert_events where alert_id = %s order by event_id",
                (alert_id,)) == [("transition", "engine", "firing"), ("ack", "alice", "acknowledged")]
    assert rows(pg_url, "select count(*) from notification_outbox where alert_id = %s", (alert_id,)) == [(2,)]
    # clears → resolves; breaches again → a NEW alert fires
    s.post(tokens["d1"], "d1", now(), temp_c=10.0)
    wait_rows(pg_url, "select 1 from alerts where alert_id = %s and state = 'resolved'", (alert_id,))
    s.post(tokens["d1"], "d1", now(), temp_c=100.0)
    new = wait_rows(pg_url, "select alert_id from alerts where tenant_id = %s and state = 'firing'", (tenant,))
    assert new[0][0] != alert_id
    # resolve by hand with a reason: recorded as a label, engine closes it too
    with psycopg.connect(pg_url) as conn:
        api.comment(conn, new[0][0], user="bob", text="looks like a sensor glitch")
        api.resolve(conn, new[0][0], user="bob", reason="false_alarm")
        detail = api.show_alert(conn, new[0][0])
    assert detail["resolution"] == "false_alarm" and detail["resolved_by"] == "bob"
    assert [e["action"] for e in detail["events"]] == ["transition", "comment", "resolve"]
    wait_until(lambda: s.alerts.call(lambda: s.alerts.engines[tenant].alert(fp)) is None, timeout=3,
               message="manual resolve reached the engine")


def test_silence_records_but_does_not_notify(stack, pg_url, unique):
    tenant = f"t{unique}"
    tokens = apply_config(pg_url, fleet_yaml(tenant, """
  - {id: hot, kind: threshold, metric: temp_c, op: ">", value: 50}
  - {id: silent, kind: absence, duration: 1s, target: {devices: [d2]}}
"""))
    with psycopg.connect(pg_url) as conn:
        add_silence(conn, matchers=matcher_from_options(tenant=tenant, tags={"line": "a"}), starts_at=now(),
                    ends_at=now() + timedelta(hours=1), created_by="ops", comment="maintenance")
    s = stack()
    s.post(tokens["d1"], "d1", now(), temp_c=100.0)
    s.post(tokens["d2"], "d2", now(), temp_c=10.0)
    got = wait_rows(pg_url, "select a.alert_id, e.silenced, e.notify from alerts a join alert_events e "
                            "using (alert_id) where a.tenant_id = %s and e.to_state = 'firing' order by a.rule_id",
                    (tenant,), n=2, timeout=4, message="both alerts fire (absence during the silence too)")
    assert [(g[1], g[2]) for g in got] == [(True, True), (True, True)]
    assert rows(pg_url, "select count(*) from notification_outbox o join alerts a using (alert_id) "
                        "where a.tenant_id = %s", (tenant,)) == [(0,)]


def test_late_readings_never_move_an_alert_backwards(stack, pg_url, unique):
    tenant = f"t{unique}"
    tokens = apply_config(pg_url, fleet_yaml(tenant, """
  - {id: hot, kind: threshold, metric: temp_c, op: ">", value: 50}
"""))
    s = stack()
    t = now()
    s.post(tokens["d1"], "d1", t, temp_c=100.0)
    alert_id = wait_rows(pg_url, "select alert_id from alerts where tenant_id = %s", (tenant,))[0][0]
    s.post(tokens["d1"], "d1", t - timedelta(seconds=10), temp_c=0.0)  # late and clear: not evaluated
    s.post(tokens["d1"], "d1", [(t - timedelta(seconds=5), {"temp_c": 1.0}), (t - timedelta(seconds=2), {"temp_c": 2.0})])
    time.sleep(0.3)
    assert rows(pg_url, "select state from alerts where alert_id = %s", (alert_id,)) == [("firing",)]
    s.post(tokens["d1"], "d1", now(), temp_c=0.0)
    wait_rows(pg_url, "select 1 from alerts where alert_id = %s and state = 'resolved'", (alert_id,))
    ats = [r[0] for r in rows(pg_url, "select at from alert_events where alert_id = %s order by event_id",
                              (alert_id,))]
    assert ats == sorted(ats) and ats[0] == t
