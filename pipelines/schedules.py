"""Schedules and jobs. Rollups and health are kept current by automation conditions (see
assets/defs_*.py, evaluated by the default automation condition sensor); the lake export by
the late-data sensor; retention by the daily schedule here."""

import dagster as dg

from assets.defs_lake import hot_store_retention, lake_export
from assets.partitions import HOURLY

lake_export_job = dg.define_asset_job("lake_export_job", selection=dg.AssetSelection.assets(lake_export),
                                      partitions_def=HOURLY, description="Export telemetry hours to the lake.")
retention_job = dg.define_asset_job("hot_store_retention_job", selection=dg.AssetSelection.assets(hot_store_retention),
                                    description="Drop exported, verified hours older than the hot window.")

retention_schedule = dg.ScheduleDefinition(
    name="hot_store_retention_daily", job=retention_job, cron_schedule="15 3 * * *",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING)

# SLA reports: hourly UTC ticks that pick the tenants at 06:00 local (see assets/defs_sla.py).
from assets.defs_sla import sla_daily_job, sla_daily_schedule, sla_monthly_job, sla_monthly_schedule  # noqa: E402,F401
