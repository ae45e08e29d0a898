"""Dagster assets of the device-health domain."""


import dagster as dg

from assets.defs_lake import lake_export
from assets.health import health_partition
from assets.partitions import DAILY, OWNERS


@dg.asset(
    partitions_def=DAILY,
    deps=[lake_export],
    group_name="device_health",
    kinds={"polars", "parquet"},
    owners=OWNERS,
    required_resource_keys={"db", "lake", "analytics"},
    automation_condition=dg.AutomationCondition.on_cron("45 0 * * *").ignore(dg.AssetSelection.assets(lake_export)),
    tags={"pulse/domain": "device_health"},
)
def device_health_daily(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Per device and UTC day: online/offline intervals from reporting gaps (offline after the
    device type's configured threshold, else ``offline_multiplier`` × its median interval),
    last seen, and hourly data completeness (readings received / expected).
    Written to health/{intervals,completeness,devices}/tenant=/date=/day.parquet."""
    window = context.partition_time_window
    settings = context.resources.analytics
    with context.resources.db.connect() as conn:
        offline = health_partition(conn, context.resources.lake.path(), window.start, window.end,
                                   thresholds_s=settings.offline_thresholds_s,
                                   multiplier=settings.offline_multiplier)
    return dg.MaterializeResult(metadata={"tenants": len(offline), "offline_intervals": sum(offline.values())})
