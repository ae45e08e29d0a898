"""Dagster definitions of OpsConductor Pulse analytics (`dagster dev -w workspace.yaml`)."""

import dagster as dg

from assets.defs_alert_analytics import alert_analytics_daily
from assets.defs_anomalies import anomaly_feedback, anomaly_models, anomaly_scores
from assets.defs_health import device_health_daily
from assets.defs_lake import hot_store_retention, lake_export
from assets.defs_rollups import rollups_1d, rollups_1h, rollups_1m
from assets.defs_sla import sla_report_daily, sla_report_monthly
from pipelines.resources import default_resources
from pipelines.schedules import lake_export_job, retention_job, retention_schedule
from pipelines.schedules import sla_daily_job, sla_daily_schedule, sla_monthly_job, sla_monthly_schedule
from pipelines.schedules import anomaly_scoring_job, anomaly_scoring_schedule
from pipelines.schedules import anomaly_training_job, anomaly_training_schedule
from pipelines.sensors import lake_export_late_data_sensor

defs = dg.Definitions(
    assets=[lake_export, hot_store_retention, rollups_1m, rollups_1h, rollups_1d, device_health_daily,
            sla_report_daily, sla_report_monthly, alert_analytics_daily,
            anomaly_feedback, anomaly_models, anomaly_scores],
    jobs=[lake_export_job, retention_job, sla_daily_job, sla_monthly_job,
          anomaly_training_job, anomaly_scoring_job],
    schedules=[retention_schedule, sla_daily_schedule, sla_monthly_schedule,
               anomaly_training_schedule, anomaly_scoring_schedule],
    sensors=[lake_export_late_data_sensor],
    resources=default_resources(),
)
