"""Dagster assets of the rollups domain: 1m / 1h (hourly partitions) and 1d (daily)."""


import dagster as dg

from assets.checks import ROLLUP_CHECKS, CheckOutcome, record_check_results, rollup_checks
from assets.defs_lake import lake_export, to_check_results
from assets.partitions import DAILY, HOURLY, OWNERS
from assets.rollups import rollup_partition

# Eager keeps the latest partition current; the second branch re-runs any older partition
# whose lake export was re-materialized (late data), which plain eager() ignores.
LATE_DATA = (dg.AutomationCondition.any_deps_updated().since_last_handled()
             & ~dg.AutomationCondition.any_deps_in_progress()
             & ~dg.AutomationCondition.in_progress()).with_label("late_data")
HOURLY_CONDITION = dg.AutomationCondition.eager() | LATE_DATA
# The daily rollup runs once the day is over (after the 23:00 export), and again on late data.
DAILY_CONDITION = dg.AutomationCondition.on_cron("30 0 * * *").ignore(dg.AssetSelection.assets(lake_export)) | LATE_DATA


# Backfills run a day of hourly partitions (a week of daily ones) per run: Dagster's fixed
# cost per run (run record, event log, step launch: ~0.3-0.9 s measured) is then small next to
# the work, and a failure still only repeats one batch. Measured in `pulse bench analytics`.
BACKFILL_POLICY = {"1m": dg.BackfillPolicy.multi_run(24), "1h": dg.BackfillPolicy.multi_run(24),
                   "1d": dg.BackfillPolicy.multi_run(7)}


def _merge_outcomes(per_partition: list) -> list[CheckOutcome]:
    """One check result per check for the run: a single partition's outcomes as they are; over a
    range, passed only if every partition passed (each partition's result is recorded on its own)."""
    if len(per_partition) <= 1:
        return per_partition[0][1] if per_partition else []
    merged = []
    for i, first in enumerate(per_partition[0][1]):
        failed = [key for key, outcomes in per_partition if not outcomes[i].passed]
        merged.append(CheckOutcome(first.name, not failed, first.blocking,
                                   {"partitions": len(per_partition), "failed_partitions": ", ".join(failed[:20])}))
    return merged


def _rollup_asset(grain: str, partitions_def, condition):
    name = f"rollups_{grain}"

    # a multi_asset of one asset only so the checks can be deselected (can_subset): the bench
    # measures Dagster's overhead on the rollup alone
    @dg.multi_asset(
        name=name,
        specs=[dg.AssetSpec(
            name, deps=[lake_export], group_name="rollups", kinds={"polars" if grain == "1m" else "duckdb", "parquet"},
            owners=OWNERS, automation_condition=condition, tags={"pulse/domain": "rollups"},
            description=(f"{grain} rollups per (tenant, device, metric): count, min, max, mean, p95, last — "
                         f"from the lake's hourly files, written to rollups/{grain}/tenant=/date=/. "
                         "Checks: counts reconcile with the lake rows (blocking), duplicates, null/NaN, schema."))],
        partitions_def=partitions_def,
        required_resource_keys={"db", "lake"},
        check_specs=[dg.AssetCheckSpec(n, asset=name, blocking=b, description=f"rollups {grain}: {n.replace('_', ' ')}")
                     for n, b in ROLLUP_CHECKS.items()],
        can_subset=True,
        backfill_policy=BACKFILL_POLICY[grain],
    )
    def _asset(context: dg.AssetExecutionContext):
        # One run may cover a range of partitions (backfills, BACKFILL_POLICY): each partition is
        # still computed, written and checked on its own, exactly as a one-partition run does it.
        lake_dir = context.resources.lake.path()
        rows, tenants, per_partition = 0, set(), []
        for key in context.partition_keys:
            window = partitions_def.time_window_for_partition_key(key)
            written = rollup_partition(lake_dir, grain, window.start, window.end)
            rows += sum(written.values())
            tenants |= set(written)
            if context.selected_asset_check_keys:
                outcomes = rollup_checks(lake_dir, grain, window.start, window.end)
                with context.resources.db.connect() as conn:
                    record_check_results(conn, name, key, outcomes, context.run.run_id)
                per_partition.append((key, outcomes))
        yield dg.MaterializeResult(
            asset_key=name, metadata={"rows": rows, "tenants": len(tenants), "partitions": len(context.partition_keys)},
            check_results=to_check_results(_merge_outcomes(per_partition), context.selected_asset_check_keys,
                                           context.asset_key))

    return _asset


rollups_1m = _rollup_asset("1m", HOURLY, HOURLY_CONDITION)
rollups_1h = _rollup_asset("1h", HOURLY, HOURLY_CONDITION)
rollups_1d = _rollup_asset("1d", DAILY, DAILY_CONDITION)
