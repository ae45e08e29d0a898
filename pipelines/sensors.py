"""The late-data sensor: re-exports exactly the hours whose ingest ledger changed after
their last export (and exports hours never exported)."""


from datetime import UTC, datetime

import dagster as dg

from assets.lake import stale_hours
from assets.partitions import HOUR_KEY_FORMAT, HOURLY
from pipelines.resources import AnalyticsSettings, PulseDatabase
from pipelines.schedules import lake_export_job


def late_data_run_requests(conn, *, now: datetime, limit: int = 48) -> list[dg.RunRequest]:
    start = HOURLY.start.astimezone(UTC)  # hours before the first partition have no partition key
    requests = []
    for hour, stamp in stale_hours(conn, before=now, not_before=start)[:limit]:
        key = hour.astimezone(UTC).strftime(HOUR_KEY_FORMAT)
        # the run key changes with the ledger: a new late batch gets a new run, a repeat tick doesn't
        requests.append(dg.RunRequest(partition_key=key, run_key=f"lake_export:{key}:{stamp}",
                                      tags={"pulse/trigger": "late_data"}))
    return requests


@dg.sensor(job=lake_export_job, minimum_interval_seconds=60,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Requests lake_export runs for hours whose rows arrived after their last export.")
def lake_export_late_data_sensor(context: dg.SensorEvaluationContext, db: PulseDatabase,
                                 analytics: AnalyticsSettings):
    with db.connect() as conn:
        requests = late_data_run_requests(conn, now=datetime.now(UTC), limit=analytics.max_late_runs_per_tick)
    if not requests:
        return dg.SkipReason("every ingested hour is exported")
    return requests
