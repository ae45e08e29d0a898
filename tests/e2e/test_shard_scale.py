"""Scale simulation: 4 sharded ingest workers (`pulse ingest --shards`) on loopback.

Devices publish to their Envelope-v1 topics; the workers route them over the shared
subscription to hash-sharded topics and each consumes the shards it owns. One worker is
killed with SIGKILL in the middle of every device's breach: its shards move to the
survivors, a survivor adopts its router session, and in the end every device has exactly
one alert, fired once and resolved once, and every reading is stored exactly once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import ExitStack

import psycopg

from pulse import envelope
from pulse.sharding import assign
from pulse.simulator import utcnow
from tests.alerting.service.conftest import apply_config, fleet_yaml
from tests.helpers import count, ingest_process, wait_until
from tests.ingest.mqttpub import Publisher

SHARDS = 16
WORKERS = [f"w{i}" for i in range(4)]
DEVICES = [f"d{i:02d}" for i in range(40)]
STEPS = 60
BREACH = range(20, 30)  # steps at which every device reads 80 (> 50): one episode each
KILL_AT = 24

LOCKS = """select a.application_name, count(*) from pg_locks l join pg_stat_activity a using (pid)
           where l.locktype = 'advisory' and l.classid = 20565 and l.granted
             and l.database = (select oid from pg_database where datname = current_database())
           group by 1"""


def shard_holders(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {name.split(":", 1)[1]: n for name, n in conn.execute(LOCKS).fetchall()}


def test_four_sharded_workers_lose_and_duplicate_no_alert_when_one_dies(pg_url, mqtt_url, unique):
    tenant = f"t{unique}"
    apply_config(pg_url, fleet_yaml(tenant, '  - {id: hot, kind: threshold, metric: temp_c, op: ">", value: 50}',
                                    devices=DEVICES))
    env = {"PULSE_MQTT_URL": mqtt_url, "PULSE_SHARDS": str(SHARDS), "PULSE_MQTT_CLIENT_ID": f"pi{unique}",
           "PULSE_MQTT_SHARD_ROOT": f"pulse/s{unique}", "PULSE_BATCH_LINGER_MS": "20"}
    expected = {w: len(s) for w, s in assign(WORKERS, SHARDS).items() if s}
    pub = Publisher(mqtt_url, f"pub-{unique}")
    with ExitStack() as stack:
        procs = {w: stack.enter_context(ingest_process(pg_url, mqtt_url=mqtt_url, worker_id=w,
                                                       share_group=f"g{unique}", extra_env=env))
                 for w in WORKERS}
        # every worker owns exactly its rendezvous share (the first ones handed shards over)
        wait_until(lambda: shard_holders(pg_url) == expected, timeout=60, message=f"shards as {expected}")
        victim = max(expected, key=lambda w: (expected[w], w))
        survivors = [w for w in WORKERS if w != victim]

        def publish() -> None:
            for step in range(STEPS):
                if step == KILL_AT:
                    os.kill(procs[victim].pid, signal.SIGKILL)
                for d in DEVICES:
                    value = 80.0 if step in BREACH else 20.0
                    pub.publish(f"pulse/v1/{tenant}/{d}/telemetry", envelope.encode(d, utcnow(), {"temp_c": value}),
                                step * 1000 + DEVICES.index(d))
                time.sleep(0.12)

        thread = threading.Thread(target=publish)
        thread.start()
        thread.join(60)
        pub.wait_acked(STEPS * len(DEVICES))
        assert len(pub.acked) == STEPS * len(DEVICES)
        procs[victim].wait(5)

        # every reading the broker accepted is stored exactly once (unique series index)
        wait_until(lambda: count(pg_url, "select count(*) from telemetry where tenant_id = %s", (tenant,))
                   == STEPS * len(DEVICES), timeout=90, message="every reading stored")
        # the victim's shards moved to the survivors, by rendezvous over the survivors
        after = {w: len(s) for w, s in assign(survivors, SHARDS).items() if s}
        wait_until(lambda: shard_holders(pg_url) == after, timeout=30, message=f"shards as {after}")
        # a survivor adopted the victim's router session and ended it
        wait_until(lambda: count(pg_url, "select count(*) from ingest_workers where worker_id = %s "
                                         "and stopped_at is not null", (victim,)) == 1,
                   timeout=60, message="the victim's router session adopted")
        wait_until(lambda: count(pg_url, "select count(*) from alerts where tenant_id = %s and state = 'resolved'",
                                 (tenant,)) == len(DEVICES), timeout=60, message="every alert resolved")

    with psycopg.connect(pg_url) as conn:
        per_device = conn.execute(
            """select a.device_id, count(distinct a.alert_id),
                      count(*) filter (where e.to_state = 'firing' and e.action = 'transition'),
                      count(*) filter (where e.to_state = 'resolved' and e.action = 'transition'),
                      count(o.event_id)
               from alerts a join alert_events e using (alert_id)
               left join notification_outbox o on o.event_id = e.event_id
               where a.tenant_id = %s group by 1 order by 1""", (tenant,)).fetchall()
        first = dict(conn.execute(
            """select a.device_id, min(e.at) from alerts a join alert_events e using (alert_id)
               where a.tenant_id = %s and e.to_state = 'firing' group by 1""", (tenant,)).fetchall())
        breach = {d: (lo, hi) for d, lo, hi in conn.execute(
            "select device_id, min(time), max(time) from telemetry where tenant_id = %s and value > 50 group by 1",
            (tenant,)).fetchall()}
    assert [r[0] for r in per_device] == DEVICES, "a device's alert is missing"
    for device, alerts, fired, resolved, notifications in per_device:
        assert (alerts, fired, resolved) == (1, 1, 1), f"{device}: {alerts} alerts, fired {fired}, resolved {resolved}"
        assert notifications == 2, f"{device}: {notifications} notifications queued (firing + resolved)"
    # each fired at one of its breaching readings (the first, unless that one arrived late)
    assert all(breach[d][0] <= first[d] <= breach[d][1] for d in DEVICES)
