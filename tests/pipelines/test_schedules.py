"""The schedules fire: ticks come from Dagster's own cron iterator (what the scheduler daemon
walks), each tick is evaluated with Dagster's schedule evaluation API against a tenants table,
and the run requests (job, partition key, tenants in run config) are asserted. The late-data
sensor's "exactly the re-exported partitions" is tested in test_analytics_pipeline.py."""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg
import pytest
from dagster._utils.schedules import cron_string_iterator  # the iterator the scheduler daemon uses

from pipelines.definitions import defs
from pipelines.resources import PulseDatabase

REPO = defs.get_repository_def()
TENANTS = {"berlin": "Europe/Berlin", "delhi": "Asia/Kolkata", "akl": "Pacific/Auckland", "utc": "UTC",
           "la": "America/Los_Angeles"}


@pytest.fixture
def tenants_url(pg_url):
    with psycopg.connect(pg_url) as conn:
        for tenant, zone in TENANTS.items():
            conn.execute("insert into tenants (tenant_id, name, time_zone) values (%s, %s, %s)", (tenant, tenant, zone))
    return pg_url


def _ticks(schedule: dg.ScheduleDefinition, start: datetime, end: datetime) -> list[datetime]:
    out = []
    for t in cron_string_iterator(start.timestamp(), schedule.cron_schedule, schedule.execution_timezone):
        if t >= end:
            return out
        out.append(t)
    return out


def _evaluate(schedule, url, ticks):
    """(tick, run request) for every request the ticks produce."""
    out = []
    with dg.instance_for_test() as instance:
        for tick in ticks:
            ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick,
                                            resources={"db": PulseDatabase(url=url)}, repository_def=REPO)
            result = schedule.evaluate_tick(ctx)
            out += [(tick, r) for r in result.run_requests or []]
    return out


def _schedule(name: str) -> dg.ScheduleDefinition:
    schedule = REPO.get_schedule_def(name)
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING  # the daemon runs it without a click
    return schedule


def test_daily_sla_fires_once_per_tenant_at_six_local_for_yesterday(tenants_url):
    schedule = _schedule("sla_daily_schedule")
    assert schedule.job_name == "sla_report_daily_job"
    # 2026-03-29: Berlin switches to summer time (a 23-hour day); walk two UTC days of ticks
    requests = _evaluate(schedule, tenants_url, _ticks(schedule, datetime(2026, 3, 28, tzinfo=UTC),
                                                      datetime(2026, 3, 30, tzinfo=UTC)))
    by_tenant = defaultdict(list)
    for tick, request in requests:
        tenants = request.run_config["ops"]["sla_report_daily"]["config"]["tenants"]
        assert request.tags["pulse/tenants"] == ",".join(tenants)
        for tenant in tenants:
            local = tick.astimezone(ZoneInfo(TENANTS[tenant]))
            assert (local.hour, local.minute) == (6, 5) or (TENANTS[tenant] == "Asia/Kolkata" and local.hour == 6)
            assert request.partition_key == (local.date() - timedelta(days=1)).isoformat()
            by_tenant[tenant].append((tick, request.partition_key))
    assert by_tenant["berlin"] == [(datetime(2026, 3, 28, 5, 5, tzinfo=UTC), "2026-03-27"),
                                   (datetime(2026, 3, 29, 4, 5, tzinfo=UTC), "2026-03-28")]  # after the switch: 04:05 UTC
    assert by_tenant["utc"] == [(datetime(2026, 3, 28, 6, 5, tzinfo=UTC), "2026-03-27"),
                                (datetime(2026, 3, 29, 6, 5, tzinfo=UTC), "2026-03-28")]
    assert [k for _, k in by_tenant["delhi"]] == ["2026-03-27", "2026-03-28"]  # 06:35 local, +05:30
    assert by_tenant["delhi"][0][0] == datetime(2026, 3, 28, 1, 5, tzinfo=UTC)
    # Auckland (+13:00) is a day ahead: its 06:05 on the 29th is 17:05 UTC on the 28th
    assert by_tenant["akl"] == [(datetime(2026, 3, 28, 17, 5, tzinfo=UTC), "2026-03-28"),
                                (datetime(2026, 3, 29, 17, 5, tzinfo=UTC), "2026-03-29")]
    assert len({r.run_key for _, r in requests}) == len(requests)  # a tick's requests are distinct runs


def test_daily_sla_request_launches_the_asset_partition(tenants_url):
    schedule = _schedule("sla_daily_schedule")
    [(tick, request)] = _evaluate(schedule, tenants_url, [datetime(2026, 1, 5, 6, 5, tzinfo=UTC)])
    assert request.partition_key == "2026-01-04"
    assert request.run_config == {"ops": {"sla_report_daily": {"config": {"tenants": ["utc"], "deliver": True}}}}
    job = defs.resolve_job_def(schedule.job_name)
    assert job.partitions_def.has_partition_key(request.partition_key)
    assert request.run_key == "sla-daily:2026-01-04:utc"


def test_quiet_hours_skip_with_a_reason(tenants_url):
    schedule = _schedule("sla_daily_schedule")
    with dg.instance_for_test() as instance:
        ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime(2026, 1, 5, 3, 5, tzinfo=UTC),
                                        resources={"db": PulseDatabase(url=tenants_url)}, repository_def=REPO)
        result = schedule.evaluate_tick(ctx)
    assert not result.run_requests and "06:xx" in result.skip_message


def test_monthly_sla_fires_on_the_first_at_six_local_for_last_month(tenants_url):
    schedule = _schedule("sla_monthly_schedule")
    assert schedule.job_name == "sla_report_monthly_job"
    ticks = _ticks(schedule, datetime(2026, 1, 30, tzinfo=UTC), datetime(2026, 2, 3, tzinfo=UTC))
    assert len(ticks) == 4 * 24  # hourly ticks at :05
    requests = _evaluate(schedule, tenants_url, ticks)
    fired = {t: (tick, r.partition_key)
             for tick, r in requests for t in r.run_config["ops"]["sla_report_monthly"]["config"]["tenants"]}
    assert set(fired) == set(TENANTS) and len(requests) == len({t for t in fired.values()})
    assert all(key == "2026-01-01" for _, key in fired.values())  # January, in each tenant's zone
    assert fired["utc"][0] == datetime(2026, 2, 1, 6, 5, tzinfo=UTC)
    assert fired["berlin"][0] == datetime(2026, 2, 1, 5, 5, tzinfo=UTC)
    assert fired["akl"][0] == datetime(2026, 1, 31, 17, 5, tzinfo=UTC)  # the 1st comes early in Auckland
    assert fired["la"][0] == datetime(2026, 2, 1, 14, 5, tzinfo=UTC)
    job = defs.resolve_job_def(schedule.job_name)
    assert job.partitions_def.has_partition_key("2026-01-01")


def test_retention_fires_daily_at_0315_utc():
    schedule = _schedule("hot_store_retention_daily")
    assert schedule.job_name == "hot_store_retention_job"
    ticks = _ticks(schedule, datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC))
    assert ticks == [datetime(2026, 3, d, 3, 15, tzinfo=UTC) for d in (28, 29, 30)]
    with dg.instance_for_test() as instance:
        result = schedule.evaluate_tick(dg.build_schedule_context(instance=instance, scheduled_execution_time=ticks[0],
                                                                         repository_def=REPO))
    [request] = result.run_requests
    assert request.partition_key is None and defs.resolve_job_def(request.job_name or schedule.job_name)
