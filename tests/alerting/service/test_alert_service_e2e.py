"""Through the real ingest path: HTTP POST → writer commit → engine → alerts/events/outbox."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from tests.alerting.service.conftest import apply_config, fleet_yaml, now, rows, wait_rows

pytestmark = pytest.mark.timescale

RULES = """
  - {id: hot, kind: threshold, metric: temp_c, op: ">", value: 80, severity: critical}
  - {id: hot-shadow, kind: threshold, metric: temp_c, op: ">", value: 70, shadow: true}
"""


def test_breach_writes_alert_event_and_outbox_within_a_second(stack, pg_url, unique):
    tenant = f"t{unique}"
    tokens = apply_config(pg_url, fleet_yaml(tenant, RULES))
    s = stack()
    t0 = time.monotonic()
    s.post(tokens["d1"], "d1", now(), temp_c=95.0)
    got = wait_rows(pg_url, "select alert_id, state, shadow from alerts where tenant_id = %s and rule_id = 'hot'",
                    (tenant,), timeout=1.0, message="firing alert within 1 s")
    elapsed = time.monotonic() - t0
    assert got[0][1] == "firing" and got[0][2] is False
    alert_id = got[0][0]
    ev = rows(pg_url, "select event_id, from_state, to_state, actor, notify, silenced from alert_events "
                      "where alert_id = %s", (alert_id,))
    assert [(e[1], e[2], e[3], e[4], e[5]) for e in ev] == [("inactive", "firing", "engine", True, False)]
    outbox = rows(pg_url, "select event_id from notification_outbox where alert_id = %s", (alert_id,))
    assert outbox == [(ev[0][0],)]
    assert elapsed < 1.0

    # shadow rule: evaluated and recorded live, never notified
    shadow = wait_rows(pg_url, "select alert_id, shadow from alerts where tenant_id = %s and rule_id = 'hot-shadow'",
                       (tenant,), message="shadow alert")
    assert shadow[0][1] is True
    assert rows(pg_url, "select count(*) from notification_outbox where alert_id = %s", (shadow[0][0],)) == [(0,)]

    # clearing value: both resolve; the real one notifies its resolution, the shadow one never
    s.post(tokens["d1"], "d1", now(), temp_c=20.0)
    wait_rows(pg_url, "select 1 from alerts where tenant_id = %s and state = 'resolved'", (tenant,), n=2,
              message="both resolved")
    assert rows(pg_url, "select count(*) from notification_outbox where alert_id = %s", (alert_id,)) == [(2,)]
    assert rows(pg_url, "select count(*) from notification_outbox o join alerts a using (alert_id) "
                        "where a.shadow and a.tenant_id = %s", (tenant,)) == [(0,)]


def test_absence_fires_on_timer_without_messages(stack, pg_url, unique):
    tenant = f"t{unique}"
    tokens = apply_config(pg_url, fleet_yaml(tenant, """
  - {id: silent, kind: absence, duration: 1s, target: {devices: [d1]}}
"""))
    s = stack()
    sent = now()
    s.post(tokens["d1"], "d1", sent, temp_c=20.0)
    got = wait_rows(pg_url, "select a.alert_id, e.at from alerts a join alert_events e using (alert_id) "
                            "where a.tenant_id = %s and a.rule_id = 'silent' and e.to_state = 'firing'",
                    (tenant,), timeout=4.0, message="absence alert from the timer")
    # fired at its deadline (last reading + 1 s), not at some polling tick
    assert abs((got[0][1] - sent).total_seconds() - 1.0) < 0.01
    assert rows(pg_url, "select count(*) from notification_outbox where alert_id = %s", (got[0][0],)) == [(1,)]
    # data returns: the absence clears
    s.post(tokens["d1"], "d1", now(), temp_c=21.0)
    wait_rows(pg_url, "select 1 from alerts where alert_id = %s and state = 'resolved'", (got[0][0],),
              message="absence resolved when data returns")
