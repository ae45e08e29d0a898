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

# Anomalies: weekly (re)training with operator feedback; hourly scoring of the previous hour,
# 20 minutes past (after the late-data sensor exported it).
from assets.defs_anomalies import anomaly_feedback, anomaly_models, anomaly_scores  # noqa: E402

anomaly_training_job = dg.define_asset_job(
    "anomaly_training_job", selection=dg.AssetSelection.assets(anomaly_feedback, anomaly_models),
    description="Collect operator labels, then retrain the anomaly models from the lake.")
anomaly_training_schedule = dg.ScheduleDefinition(
    name="anomaly_training_weekly", job=anomaly_training_job, cron_schedule="30 2 * * 1",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING)
anomaly_scoring_job = dg.define_asset_job(
    "anomaly_scoring_job", selection=dg.AssetSelection.assets(anomaly_scores), partitions_def=HOURLY,
    description="Score an hour with the current anomaly models (lake + TimescaleDB + alert engine).")
anomaly_scoring_schedule = dg.build_schedule_from_partitioned_job(
    anomaly_scoring_job, name="anomaly_scoring_hourly", minute_of_hour=20,
    default_status=dg.DefaultScheduleStatus.RUNNING)
