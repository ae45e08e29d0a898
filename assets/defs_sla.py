"""Dagster assets, checks, jobs and schedules of the SLA-report domain.

Time zones: a Dagster partitions definition (and a schedule) has exactly one zone, tenants
each have their own (``tenants.time_zone``). So partition keys are *calendar labels*: key
``2026-11-05`` of ``sla_report_daily`` means "5 Nov 2026 in each tenant's own zone", key
``2026-11-01`` of ``sla_report_monthly`` "November 2026 in each tenant's zone". Each run
computes the tenant-local window itself (``assets.sla.parse_period``) and skips tenants whose
local period has not ended yet. ``end_offset=1`` makes today's/this month's key exist, so a
tenant east of UTC (whose day ends before UTC's) can be reported at its own 06:00.

Schedules: one schedule per zone would need a code change per new tenant zone. Instead the
two schedules tick hourly at :05 UTC and request, per partition key, one run for the tenants
whose *local* time is 06:xx (daily: yesterday; monthly: on the 1st, last month) — each zone,
including :30/:45 offsets and DST days, hits 06:xx exactly once a day. The tenant list travels
in run config, the run key makes a tick idempotent.
"""


from datetime import UTC, datetime

import dagster as dg
import polars as pl

from assets.checks import CheckOutcome, record_check_results
from assets.defs_health import device_health_daily
from assets.partitions import OWNERS, PARTITIONS_START
from assets.sla import parse_period, previous_period

SLA_DAILY = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1)
SLA_MONTHLY = dg.MonthlyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1)
REPORT_LOCAL_HOUR = 6
CHECKS = {"availability_in_range": True, "incidents_match_downtime": True, "files_written": True,
          "deliveries_ok": False}


class SlaRunConfig(dg.Config):
    tenants: list[str] = []  # empty: every tenant whose local period has ended and that wants this kind
    deliver: bool = True


def _check_specs(asset_name: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset_name, blocking=blocking,
                              description=f"SLA report check {name}") for name, blocking in CHECKS.items()]


def sla_checks(outcomes: list) -> list[CheckOutcome]:
    """Pure checks over the runs of one materialization (assets.sla_delivery.RunOutcome)."""
    out_of_range, mismatched, missing, failed = [], [], [], []
    for o in outcomes:
        a = o.report.avail
        for df, key in ((a.devices, "device_id"), (a.sites, "site_id")):
            bad = df.filter((pl.col("availability_pct") < 0) | (pl.col("availability_pct") > 100)
                            | (pl.col("completeness_pct") < 0) | (pl.col("completeness_pct") > 100))
            out_of_range += [f"{o.report.tenant_id}/{v}" for v in bad[key].to_list()]
        inc = float(a.incidents["duration_s"].sum() or 0.0)
        down = float(a.devices["downtime_s"].sum() or 0.0)
        if abs(inc - down) > 1e-3:
            mismatched.append({"tenant": o.report.tenant_id, "incidents_s": inc, "downtime_s": down})
        missing += [str(f) for f in o.files if not f.exists() or f.stat().st_size == 0]
        failed += [f"{o.report.tenant_id}: {d['kind']} {d['target']}: {d['error']}" for d in o.delivered_to if not d["ok"]]
    return [
        CheckOutcome("availability_in_range", not out_of_range, True,
                     {"reports": len(outcomes), "out_of_range": ", ".join(out_of_range[:20])}),
        CheckOutcome("incidents_match_downtime", not mismatched, True, {"mismatched": str(mismatched[:10])}),
        CheckOutcome("files_written", not missing, True,
                     {"files": sum(len(o.files) for o in outcomes), "missing": ", ".join(missing[:20])}),
        CheckOutcome("deliveries_ok", not failed, False,
                     {"deliveries": sum(len(o.delivered_to) for o in outcomes), "failed": "; ".join(failed[:10])}),
    ]


def run_sla_partition(conn, lake_dir, kind: str, partition_key: str, *, tenants: list[str] | None = None,
                      deliver: bool = True, now: datetime | None = None, triggered_by: str = "dagster",
                      **health_options) -> tuple[list, list[str]]:
    """Every (requested) tenant's report for one partition key. Returns (outcomes, skipped)."""
    from assets.sla import load_report_settings
    from assets.sla_delivery import run_sla_report

    now = now or datetime.now(UTC)
    label = partition_key[:7] if kind == "monthly" else partition_key
    rows = conn.execute("select tenant_id, time_zone from tenants order by tenant_id").fetchall()
    conn.commit()
    outcomes, skipped = [], []
    for tenant, zone in rows:
        if tenants and tenant not in tenants:
            continue
        settings = load_report_settings(conn, tenant)
        if not getattr(settings, kind) or now < parse_period(label, zone or "UTC").end:
            skipped.append(tenant)  # not subscribed to this kind, or its local period is not over
            continue
        outcomes.append(run_sla_report(conn, tenant, label, lake_dir=lake_dir, deliver=deliver, settings=settings,
                                       triggered_by=triggered_by, now=now, **health_options))
    return outcomes, skipped


def _materialize(context: dg.AssetExecutionContext, config: SlaRunConfig, kind: str):
    settings = context.resources.analytics
    lake = context.resources.lake.path()
    with context.resources.db.connect() as conn:
        outcomes, skipped = run_sla_partition(
            conn, lake if lake.exists() else None, kind, context.partition_key, tenants=config.tenants or None,
            deliver=config.deliver, triggered_by=f"dagster:{context.run.run_id}",
            thresholds_s=settings.offline_thresholds_s, multiplier=settings.offline_multiplier)
        checks = sla_checks(outcomes)
        record_check_results(conn, context.asset_key.to_user_string(), context.partition_key, checks, context.run.run_id)
    summaries = [o.summary for o in outcomes]
    return dg.MaterializeResult(
        metadata={"reports": len(outcomes), "skipped_tenants": ", ".join(skipped),
                  "run_ids": ", ".join(str(o.run_id) for o in outcomes),
                  "below_target": ", ".join(s["tenant_id"] for s in summaries if not s["meets_target"]),
                  "statuses": ", ".join(f"{o.summary['tenant_id']}={o.status}" for o in outcomes)},
        check_results=[dg.AssetCheckResult(check_name=c.name, passed=c.passed, metadata=c.metadata,
                                           severity=dg.AssetCheckSeverity.ERROR if c.blocking
                                           else dg.AssetCheckSeverity.WARN) for c in checks])


@dg.asset(
    partitions_def=SLA_DAILY, deps=[device_health_daily], group_name="sla_reports", kinds={"polars", "html"},
    owners=OWNERS, required_resource_keys={"db", "lake", "analytics"}, check_specs=_check_specs("sla_report_daily"),
    tags={"pulse/domain": "sla"},
)
def sla_report_daily(context: dg.AssetExecutionContext, config: SlaRunConfig) -> dg.MaterializeResult:
    """Daily SLA report per tenant for the partition's calendar day *in the tenant's zone*:
    availability per device/site/tenant vs target, downtime incidents, alert MTTA/MTTR by
    severity and site, data completeness. Files (CSV/JSON/HTML) in the tenant's report folder,
    delivered to its subscribers; every run in ``report_runs``."""
    return _materialize(context, config, "daily")


@dg.asset(
    partitions_def=SLA_MONTHLY, deps=[device_health_daily], group_name="sla_reports", kinds={"polars", "html"},
    owners=OWNERS, required_resource_keys={"db", "lake", "analytics"},
    check_specs=_check_specs("sla_report_monthly"), tags={"pulse/domain": "sla"},
)
def sla_report_monthly(context: dg.AssetExecutionContext, config: SlaRunConfig) -> dg.MaterializeResult:
    """Monthly SLA report per tenant (partition key YYYY-MM-01 = that calendar month in each
    tenant's zone); same contents and delivery as the daily report."""
    return _materialize(context, config, "monthly")


sla_daily_job = dg.define_asset_job("sla_report_daily_job", selection=dg.AssetSelection.assets(sla_report_daily),
                                    description="Daily SLA reports (tenant-local days).")
sla_monthly_job = dg.define_asset_job("sla_report_monthly_job",
                                      selection=dg.AssetSelection.assets(sla_report_monthly),
                                      description="Monthly SLA reports (tenant-local months).")


def tenants_due(tenants: list[tuple[str, str]], now: datetime, kind: str,
                local_hour: int = REPORT_LOCAL_HOUR) -> dict[str, list[str]]:
    """Partition key → tenants whose local clock is in ``local_hour`` at ``now`` (monthly: on
    the 1st). Pure, so the schedules' zone logic is testable without Dagster."""
    from zoneinfo import ZoneInfo

    due: dict[str, list[str]] = {}
    for tenant, zone in tenants:
        local = now.astimezone(ZoneInfo(zone or "UTC"))
        if local.hour != local_hour or (kind == "monthly" and local.day != 1):
            continue
        label = previous_period(kind, now, zone or "UTC")
        key = f"{label}-01" if kind == "monthly" else label
        due.setdefault(key, []).append(tenant)
    return due


def _schedule_requests(context: dg.ScheduleEvaluationContext, kind: str, asset_name: str):
    now = context.scheduled_execution_time or datetime.now(UTC)
    with context.resources.db.connect() as conn:
        tenants = conn.execute("select tenant_id, time_zone from tenants order by tenant_id").fetchall()
        conn.commit()
    due = tenants_due([(t, z) for t, z in tenants], now, kind)
    if not due:
        return dg.SkipReason(f"no tenant is at {REPORT_LOCAL_HOUR:02d}:xx local time"
                             + (" on the 1st" if kind == "monthly" else ""))
    return [dg.RunRequest(run_key=f"sla-{kind}:{key}:{','.join(ts)}", partition_key=key,
                          run_config={"ops": {asset_name: {"config": {"tenants": ts, "deliver": True}}}},
                          tags={"pulse/tenants": ",".join(ts)[:200]})
            for key, ts in sorted(due.items())]


@dg.schedule(cron_schedule="5 * * * *", job=sla_daily_job, execution_timezone="UTC", required_resource_keys={"db"},
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Hourly tick; daily SLA reports for tenants at 06:xx local time (yesterday, local).")
def sla_daily_schedule(context: dg.ScheduleEvaluationContext):
    return _schedule_requests(context, "daily", "sla_report_daily")


@dg.schedule(cron_schedule="5 * * * *", job=sla_monthly_job, execution_timezone="UTC",
             required_resource_keys={"db"}, default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Hourly tick; monthly SLA reports on the 1st at 06:xx local time (last month, local).")
def sla_monthly_schedule(context: dg.ScheduleEvaluationContext):
    return _schedule_requests(context, "monthly", "sla_report_monthly")
