"""Dagster assets of the lake domain: hourly export to Parquet and hot-store retention."""


from datetime import UTC, datetime

import dagster as dg

from assets.checks import EXPORT_CHECKS, export_checks, record_check_results
from assets.lake import apply_retention, export_hour
from assets.partitions import HOURLY, OWNERS


def to_check_results(outcomes, selected, asset_key) -> list[dg.AssetCheckResult]:
    out = []
    for o in outcomes:
        if dg.AssetCheckKey(asset_key, o.name) not in selected:
            continue
        out.append(dg.AssetCheckResult(
            check_name=o.name, passed=bool(o.passed), metadata=o.metadata,
            severity=dg.AssetCheckSeverity.ERROR if o.blocking else dg.AssetCheckSeverity.WARN))
    return out


@dg.asset(
    partitions_def=HOURLY,
    group_name="lake",
    kinds={"postgres", "parquet"},
    owners=OWNERS,
    required_resource_keys={"db", "lake"},
    check_specs=[dg.AssetCheckSpec(name, asset="lake_export", blocking=blocking,
                                   description=f"lake export: {name.replace('_', ' ')}")
                 for name, blocking in EXPORT_CHECKS.items()],
    tags={"pulse/domain": "lake"},
)
def lake_export(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Telemetry of one hour, hot store → Parquet (telemetry/tenant=/date=/hour=HH.parquet).

    One zstd file per tenant-hour, sorted by (device, metric, time), replaced atomically;
    every export is recorded in ``lake_exports``. The late-data sensor re-runs hours that got
    rows after their export. Checks: row counts reconciled with the store (blocking),
    duplicates, null/NaN, schema.
    """
    hour = context.partition_time_window.start
    lake_dir = context.resources.lake.path()
    with context.resources.db.connect() as conn:
        result = export_hour(conn, lake_dir, hour)
        outcomes = []
        if context.selected_asset_check_keys:
            outcomes = export_checks(conn, lake_dir, hour)
            record_check_results(conn, "lake_export", context.partition_key, outcomes, context.run.run_id)
    return dg.MaterializeResult(
        metadata={"rows": result.rows, "tenants": len(result.tenants),
                  "bytes": sum(t.bytes for t in result.tenants), "removed_tenants": len(result.removed),
                  "exported_at": result.exported_at.isoformat()},
        check_results=to_check_results(outcomes, context.selected_asset_check_keys, context.asset_key),
    )


@dg.asset(
    group_name="lake",
    kinds={"postgres", "timescaledb"},
    owners=OWNERS,
    deps=[lake_export],
    required_resource_keys={"db", "lake", "analytics"},
    tags={"pulse/domain": "lake"},
)
def hot_store_retention(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Drops hot-store telemetry older than the hot window (``hot_window_days``), only for
    tenant-hours exported to the lake whose exported row count equals the store's live
    count and whose file is present. TimescaleDB: ``drop_chunks`` for fully eligible chunks,
    DELETE otherwise; the embedded store: DELETE."""
    with context.resources.db.connect() as conn:
        result = apply_retention(conn, context.resources.lake.path(), now=datetime.now(UTC),
                                 hot_days=context.resources.analytics.hot_window_days)
    reasons: dict[str, int] = {}
    for _, _, reason in result.kept_hours:
        key = reason.split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    return dg.MaterializeResult(metadata={
        "cutoff": result.cutoff.isoformat(), "dropped_tenant_hours": len(result.dropped_hours),
        "dropped_chunks": len(result.dropped_chunks), "deleted_rows": result.deleted_rows,
        "kept_tenant_hours": len(result.kept_hours), "kept_reasons": reasons})
