"""Dagster asset of the alert-analytics domain (UTC days; written to the lake for the app)."""


import dagster as dg

from assets.alert_analytics import TABLES, alert_analytics_partition, read_alert_analytics
from assets.checks import CheckOutcome, record_check_results
from assets.partitions import DAILY, OWNERS

CHECKS = {"tables_written": True, "shares_in_range": False}


class AlertAnalyticsConfig(dg.Config):
    auto_resolve_minutes: float = 5.0


def alert_analytics_checks(lake_dir, day_key: str, rows: dict[str, int]) -> list[CheckOutcome]:
    """Every table computed; the tenant shares are proportions (0..1)."""
    import polars as pl

    summary = read_alert_analytics(lake_dir, "summary")
    if summary.height:
        summary = summary.filter(pl.col("start").dt.strftime("%Y-%m-%d") == day_key)
    bad = []
    for col in ("auto_resolved_share", "flapping_share"):
        if summary.height:
            bad += summary.filter((pl.col(col) < 0) | (pl.col(col) > 1))["tenant_id"].to_list()
    return [CheckOutcome("tables_written", set(rows) == set(TABLES), True, {"rows": str(rows)}),
            CheckOutcome("shares_in_range", not bad, False, {"tenants_out_of_range": ", ".join(bad)})]


@dg.asset(
    partitions_def=DAILY, group_name="alert_analytics", kinds={"polars", "parquet"}, owners=OWNERS,
    required_resource_keys={"db", "lake"},
    automation_condition=dg.AutomationCondition.on_cron("50 0 * * *"),
    check_specs=[dg.AssetCheckSpec(n, asset="alert_analytics_daily", blocking=b) for n, b in CHECKS.items()],
    tags={"pulse/domain": "alert_analytics"},
)
def alert_analytics_daily(context: dg.AssetExecutionContext, config: AlertAnalyticsConfig) -> dg.MaterializeResult:
    """Per tenant and UTC day (alerts started that day): noisiest rules, alerts per device and
    site, alerts auto-resolved within N minutes, pages per responder and per on-call shift
    (per day without schedules), flapping share. Written to
    alert_analytics/<table>/tenant=/date=/day.parquet."""
    window = context.partition_time_window
    lake = context.resources.lake.path()
    with context.resources.db.connect() as conn:
        rows = alert_analytics_partition(conn, lake, window.start, window.end,
                                         auto_resolve_minutes=config.auto_resolve_minutes)
        checks = alert_analytics_checks(lake, context.partition_key, rows)
        record_check_results(conn, "alert_analytics_daily", context.partition_key, checks, context.run.run_id)
    return dg.MaterializeResult(
        metadata={f"rows_{k}": v for k, v in rows.items()},
        check_results=[dg.AssetCheckResult(check_name=c.name, passed=c.passed, metadata=c.metadata,
                                           severity=dg.AssetCheckSeverity.ERROR if c.blocking
                                           else dg.AssetCheckSeverity.WARN) for c in checks])
