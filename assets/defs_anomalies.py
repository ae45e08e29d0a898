"""Dagster assets of the anomalies domain: operator feedback → models → hourly scores.

Thin wrappers over ``assets/anomalies.py`` and ``detectors/feedback.py``; scheduled by
``pipelines/schedules.py`` (weekly training, hourly scoring)."""

from datetime import UTC, datetime
from typing import Any

import dagster as dg

from assets.anomalies import TrainSettings, drift_check, score_hour, train_models
from assets.checks import record_check_results
from assets.defs_lake import lake_export, to_check_results
from assets.lake import hour_floor
from assets.partitions import HOURLY, OWNERS
from detectors import feedback
from pulse.errors import UserError

TAGS = {"pulse/domain": "anomalies"}


class AnomalyTrainingConfig(dg.Config):
    """Training run settings (Launchpad / run config)."""

    detector: str = "default"  # registry name; `pulse detectors list`
    params: dict[str, Any] = {}  # detector parameters (validated by the registry)
    window_days: float = 7.0  # training window ending at the current hour …
    train_end: str | None = None  # … or at this ISO time (backfills, tests)
    min_points: int = 200  # per (tenant, device type, metric) after exclusions
    use_feedback: bool = True  # exclusions + calibration threshold from operator labels
    target_precision: float = 0.5
    min_labels: int = 3


class AnomalyScoringConfig(dg.Config):
    context_hours: float = 6.0  # device history read before the hour (≥ the detector's look-back)


def _precision_table(rows: list[dict]) -> dg.TableMetadataValue:
    cols = ["detector", "precision", "real_fault", "false_alarm", "maintenance", "labelled"]
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: (-1.0 if r[c] is None else r[c]) if c == "precision" else r[c] for c in cols})
                 for r in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "float" if c == "precision" else
                                                      "string" if c == "detector" else "int") for c in cols]))


@dg.asset(
    group_name="anomalies",
    kinds={"postgres"},
    owners=OWNERS,
    required_resource_keys={"db"},
    tags=TAGS,
)
def anomaly_feedback(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Operator labels on anomaly alerts — resolve reasons (or ack comments) ``real_fault`` /
    ``false_alarm`` / ``maintenance``, view ``anomaly_labels`` — and each detector's measured
    precision on them: real faults / (real faults + false alarms); -1 in the table = nothing
    judged yet. Retraining (``anomaly_models``) uses the same labels."""
    with context.resources.db.connect() as conn:
        labels = feedback.load_labels(conn)
    rows = feedback.precision(labels)
    return dg.MaterializeResult(metadata={
        "labelled_alerts": len(labels),
        **{label: sum(1 for x in labels if x.label == label) for label in feedback.LABELS},
        "precision": _precision_table(rows),
        "precision_by_detector": {r["detector"]: r["precision"] for r in rows},
    })


@dg.asset(
    deps=[lake_export, anomaly_feedback],
    group_name="anomalies",
    kinds={"parquet", "postgres", "python"},
    owners=OWNERS,
    required_resource_keys={"db", "lake"},
    tags=TAGS,
)
def anomaly_models(context: dg.AssetExecutionContext, config: AnomalyTrainingConfig) -> dg.MaterializeResult:
    """(Re)trains one model per (tenant, device type, metric) from the lake's last
    ``window_days`` and records each as a new current version in ``anomaly_models``
    (training window, detector, parameters, calibration threshold, drift baseline, pickled
    model). Feedback: maintenance and real-fault windows are left out of the training data;
    when false alarms dominate a model's labelled alerts its threshold rises above them
    (docs/analytics.md, "Anomaly models")."""
    settings = TrainSettings(detector=config.detector, params=config.params, window_days=config.window_days,
                             min_points=config.min_points, use_feedback=config.use_feedback,
                             target_precision=config.target_precision, min_labels=config.min_labels)
    try:
        end = datetime.fromisoformat(config.train_end) if config.train_end else datetime.now(UTC)
    except ValueError:
        raise UserError(f"train_end {config.train_end!r} is not an ISO 8601 time") from None
    if end.tzinfo is None:
        raise UserError("train_end needs a time zone, e.g. 2026-03-02T12:00:00+00:00")
    end = hour_floor(end)
    with context.resources.db.connect() as conn:
        versions = train_models(conn, context.resources.lake.path(), end=end, settings=settings)
    return dg.MaterializeResult(metadata={
        "models": len(versions),
        "train_end": end.isoformat(),
        "window_days": config.window_days,
        "versions": {f"{v.tenant_id}/{v.device_type or '-'}/{v.metric}": {
            "model_id": v.model_id, "version": v.version, "detector": v.detector, "threshold": v.threshold,
            "points": v.n_points, "devices": v.n_devices, "excluded_points": v.excluded_points,
            "feedback": v.feedback["reason"]} for v in versions},
    })


@dg.asset(
    partitions_def=HOURLY,
    deps=[lake_export, anomaly_models],
    group_name="anomalies",
    kinds={"parquet", "postgres", "timescaledb"},
    owners=OWNERS,
    required_resource_keys={"db", "lake"},
    check_specs=[dg.AssetCheckSpec("score_drift", asset="anomaly_scores",
                                   description="population stability index of the hour's scores vs. the "
                                               "training window, per model (warn above 0.25)")],
    tags=TAGS,
)
def anomaly_scores(context: dg.AssetExecutionContext, config: AnomalyScoringConfig) -> dg.MaterializeResult:
    """Scores one hour of every device with the current model of its (device type, metric):
    lake ``anomaly_scores/tenant=/date=/hour=HH.parquet`` + the ``anomaly_scores`` hypertable,
    and hands the hour's peak score per device to the alert service (``anomaly`` rules
    evaluate ``anomaly_score.<metric>``). Re-running an hour replaces its scores."""
    hour = context.partition_time_window.start
    lake_dir = context.resources.lake.path()
    with context.resources.db.connect() as conn:
        result = score_hour(conn, lake_dir, hour, context_hours=config.context_hours)
        outcomes = []
        if context.selected_asset_check_keys:
            outcomes = [drift_check(conn, result)]
            record_check_results(conn, "anomaly_scores", context.partition_key, outcomes, context.run.run_id)
    return dg.MaterializeResult(
        metadata={"rows": result.rows, "model_versions": {str(k): v for k, v in sorted(result.models.items())},
                  "files": len(result.paths)},
        check_results=to_check_results(outcomes, context.selected_asset_check_keys, context.asset_key),
    )
