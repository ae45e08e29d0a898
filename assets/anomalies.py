"""Anomaly models and scores: training from the lake, hourly scoring, drift, feedback.

Pure functions over a psycopg connection and the lake directory; the Dagster assets in
``assets/defs_anomalies.py`` are thin wrappers.

* **Training** (:func:`train_models`): one model per (tenant, device type, metric) from the
  lake's telemetry of the training window. The registry detector (``default`` unless
  configured) is fitted on the pooled series of the type's devices (device by device, in
  time order); operator feedback (``detectors.feedback``) removes maintenance/real-fault
  windows from the data and sets the model's calibration threshold. Every version is a row
  of ``anomaly_models``: window, parameters, detector, threshold, the training-window score
  distribution (the drift baseline) and the pickled fitted detector; the newest is current.
* **Scoring** (:func:`score_hour`): every device's readings of one hour are scored by the
  current model of its type, as the continuation of the device's own preceding readings
  (``context_hours`` of lake data, at least the detector's look-back). Scores go to the lake
  (``anomaly_scores/tenant=/date=/hour=HH.parquet``, replaced atomically) and to the
  ``anomaly_scores`` hypertable (an hour re-scored replaces its rows); each (device, metric)
  gets a delivery row with the hour's peak calibrated score and ``pg_notify`` wakes the
  alert service, whose engine evaluates ``anomaly`` rules on ``anomaly_score.<metric>``.
* **Drift** (:func:`drift_check`): population stability index of an hour's raw scores
  against the training window's, per model, over the baseline's decile bins.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from assets.checks import CheckOutcome
from assets.lake import HOUR, hour_files, hour_floor, write_parquet_atomic
from assets.rollups import lake_files_for
from detectors import feedback, registry
from pulse.errors import UserError

SCORE_PREFIX = "anomaly_score."  # score metrics are never trained on
SCORES_SCHEMA = pa.schema([
    ("time", pa.timestamp("us", tz="UTC")),
    ("tenant_id", pa.string()),
    ("device_id", pa.string()),
    ("metric", pa.string()),
    ("score", pa.float64()),
    ("raw", pa.float64()),
    ("model_id", pa.int64()),
])
DRIFT_PSI_MAX = 0.25  # the usual "significant shift" level of the population stability index
DRIFT_MIN_SCORES = 50
_READ_COLS = ["time", "tenant_id", "device_id", "metric", "value"]


@dataclass(frozen=True)
class TrainSettings:
    detector: str = "default"
    params: Mapping[str, Any] = field(default_factory=dict)
    window_days: float = 7.0
    min_points: int = 200  # per (tenant, device type, metric), after exclusions
    use_feedback: bool = True
    target_precision: float = 0.5
    min_labels: int = 3


@dataclass(frozen=True)
class ModelVersion:
    model_id: int
    tenant_id: str
    device_type: str
    metric: str
    version: int
    detector: str
    threshold: float
    train_start: datetime
    train_end: datetime
    n_points: int
    n_devices: int
    excluded_points: int
    feedback: dict


# ------------------------------------------------------------------ lake input


def read_lake(lake_dir: Path, start: datetime, end: datetime) -> pl.DataFrame:
    """Telemetry rows of [start, end) from the lake, score metrics left out."""
    paths = [p for ps in lake_files_for(Path(lake_dir), hour_floor(start), end).values() for p in ps]
    if not paths:
        return pl.DataFrame(schema={"time": pl.Datetime("us", "UTC"), "tenant_id": pl.String,
                                    "device_id": pl.String, "metric": pl.String, "value": pl.Float64})
    df = pl.read_parquet(paths, columns=_READ_COLS)
    return df.filter((pl.col("time") >= start) & (pl.col("time") < end)
                     & ~pl.col("metric").str.starts_with(SCORE_PREFIX) & pl.col("value").is_finite())


def with_device_types(conn, df: pl.DataFrame) -> pl.DataFrame:
    """Adds ``device_type`` from the registry ('' for devices without one or unknown)."""
    rows = conn.execute("select tenant_id, device_id, coalesce(device_type, '') from devices").fetchall()
    conn.commit()
    types = pl.DataFrame(rows, schema={"tenant_id": pl.String, "device_id": pl.String, "device_type": pl.String},
                         orient="row")
    return df.join(types, on=["tenant_id", "device_id"], how="left").with_columns(
        pl.col("device_type").fill_null(""))


def drop_windows(df: pl.DataFrame, windows: Iterable[tuple[str, str, datetime, datetime]]) -> pl.DataFrame:
    """Rows outside the (tenant, device, start, end) windows."""
    keep = pl.lit(True)
    for tenant, device, start, end in windows:
        start, end = start.astimezone(UTC), end.astimezone(UTC)  # psycopg gives zoneinfo 'Etc/UTC'
        keep = keep & ~((pl.col("tenant_id") == tenant) & (pl.col("device_id") == device)
                        & (pl.col("time") >= start) & (pl.col("time") <= end))
    return df.filter(keep)


# ------------------------------------------------------------------ detector helpers


def fit_pooled(detector: str, params: Mapping[str, Any], series: list[np.ndarray]):
    """A detector fitted on the devices' series pooled (concatenated in the given order)."""
    return registry.create(detector, **dict(params)).fit(np.concatenate(series))


def score_continuation(det, context: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Causal raw scores of ``values`` as the continuation of the device's own ``context``."""
    if len(values) == 0:
        return np.empty(0)
    return det.score(np.concatenate([context, values]))[len(context):]


def baseline(raw: np.ndarray, threshold: float) -> dict[str, Any]:
    """Training-window score distribution: decile bin edges + shares (for drift) and summary."""
    raw = np.asarray(raw, dtype=float)
    edges = np.unique(np.quantile(raw, np.linspace(0, 1, 11))) if raw.size else np.array([0.0, 1.0])
    inner = edges[1:-1]
    props = np.bincount(np.searchsorted(inner, raw, side="right"), minlength=len(inner) + 1) / max(raw.size, 1)
    q = (lambda p: float(np.quantile(raw, p))) if raw.size else (lambda p: 0.0)
    return {"n": int(raw.size), "edges": inner.tolist(), "props": props.tolist(), "mean": float(raw.mean()) if raw.size else 0.0,
            "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": q(1.0),
            "alert_rate": float((feedback.calibrate(raw, threshold) >= feedback.REFERENCE_LEVEL).mean()) if raw.size else 0.0}


def psi(base: Mapping[str, Any], raw: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index of ``raw`` against a :func:`baseline`."""
    inner = np.asarray(base["edges"], dtype=float)
    expected = np.asarray(base["props"], dtype=float)
    actual = np.bincount(np.searchsorted(inner, raw, side="right"), minlength=len(expected)) / max(len(raw), 1)
    e, a = np.maximum(expected, eps), np.maximum(actual, eps)
    return float(np.sum((a - e) * np.log(a / e)))


# ------------------------------------------------------------------ training


def _series_by_device(group: pl.DataFrame) -> tuple[list[str], list[np.ndarray]]:
    devices, series = [], []
    for (device,), part in group.sort(["device_id", "time"]).group_by(["device_id"], maintain_order=True):
        devices.append(device)
        series.append(part["value"].to_numpy())
    return devices, series


def train_models(conn, lake_dir: Path, *, end: datetime, settings: TrainSettings = TrainSettings()) -> list[ModelVersion]:
    """Train and record one new model version per (tenant, device type, metric) with enough data."""
    try:
        name = registry.canonical(settings.detector)
        params = registry.validate_params(name, dict(settings.params))
    except (registry.UnknownDetectorError, registry.InvalidParamsError) as exc:
        raise UserError(str(exc)) from None
    if settings.window_days <= 0:
        raise UserError("window_days must be positive")
    start = end - timedelta(days=settings.window_days)
    df = with_device_types(conn, read_lake(lake_dir, start, end))
    labels = feedback.load_labels(conn) if settings.use_feedback else []
    keys = ["tenant_id", "device_type", "metric"]
    before = {(t, d, m): n for t, d, m, n in df.group_by(keys).len().iter_rows()}
    df = drop_windows(df, feedback.exclusion_windows(labels))
    versions = []
    for (tenant, dtype, metric), group in df.group_by(keys, maintain_order=True):
        if group.height < settings.min_points:
            continue
        devices, series = _series_by_device(group)
        det = fit_pooled(name, params, series)
        mine = [lab for lab in labels if (lab.tenant_id, lab.device_type, lab.metric, lab.detector)
                == (tenant, dtype, metric, name)]
        decision = feedback.feedback_threshold(mine, target_precision=settings.target_precision,
                                               min_labels=settings.min_labels)
        skip = [min(det.lookback(), len(s) // 4) for s in series]
        raw = np.concatenate([det.score(s)[k:] for s, k in zip(series, skip)])
        fb = {"reason": decision.reason, "judged": decision.judged,
              "precision_at_reference": decision.precision_at_reference,
              "precision_at_threshold": decision.precision_at_threshold,
              "labels": feedback.precision(mine, by=("detector",))}
        versions.append(_record_model(conn, tenant, dtype, metric, name, params, decision.threshold, start, end,
                                      group.height, len(devices),
                                      before.get((tenant, dtype, metric), 0) - group.height,
                                      baseline(raw, decision.threshold), fb, pickle.dumps(det)))
    return versions


def _record_model(conn, tenant, dtype, metric, detector, params, threshold, start, end, n_points, n_devices,
                  excluded, base, fb, blob) -> ModelVersion:
    from psycopg.types.json import Jsonb

    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"anomaly_models/{tenant}/{dtype}/{metric}",))
        version = conn.execute(
            "select coalesce(max(version), 0) + 1 from anomaly_models where tenant_id = %s and device_type = %s "
            "and metric = %s", (tenant, dtype, metric)).fetchone()[0]
        conn.execute("update anomaly_models set is_current = false where tenant_id = %s and device_type = %s "
                     "and metric = %s and is_current", (tenant, dtype, metric))
        model_id = conn.execute(
            """insert into anomaly_models (tenant_id, device_type, metric, version, detector, params, threshold,
                   train_start, train_end, n_points, n_devices, excluded_points, baseline, feedback, model)
               values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning model_id""",
            (tenant, dtype, metric, version, detector, Jsonb(params), threshold, start, end, n_points, n_devices,
             excluded, Jsonb(base), Jsonb(json.loads(json.dumps(fb, default=str))), blob)).fetchone()[0]
    return ModelVersion(model_id, tenant, dtype, metric, version, detector, threshold, start, end, n_points,
                        n_devices, excluded, fb)


# ------------------------------------------------------------------ scoring


@dataclass
class LoadedModel:
    model_id: int
    version: int
    detector: str
    threshold: float
    baseline: dict
    det: Any


def current_models(conn) -> dict[tuple[str, str, str], LoadedModel]:
    rows = conn.execute(
        """select tenant_id, device_type, metric, model_id, version, detector, threshold, baseline, model
           from anomaly_models where is_current""").fetchall()
    conn.commit()
    return {(r[0], r[1], r[2]): LoadedModel(r[3], r[4], r[5], r[6], r[7], pickle.loads(bytes(r[8]))) for r in rows}


@dataclass
class HourScores:
    hour: datetime
    table: pa.Table  # SCORES_SCHEMA
    models: dict[int, str] = field(default_factory=dict)  # model_id -> "tenant/type/metric vN (detector)"
    paths: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.table.num_rows


def compute_hour_scores(df: pl.DataFrame, models: Mapping[tuple[str, str, str], LoadedModel],
                        hour: datetime) -> HourScores:
    """Scores of every (device, metric) with readings in ``hour`` and a current model;
    ``df`` holds the hour and its preceding context (with ``device_type``)."""
    end = hour + HOUR
    parts: list[pl.DataFrame] = []
    used: dict[int, str] = {}
    df = df.sort(["tenant_id", "device_id", "metric", "time"])
    for (tenant, device, metric, dtype), part in df.group_by(["tenant_id", "device_id", "metric", "device_type"],
                                                             maintain_order=True):
        m = models.get((tenant, dtype, metric))
        if m is None:
            continue
        inside = part.filter(pl.col("time") >= hour)
        if inside.height == 0:
            continue
        keep = max(m.det.lookback() - 1, 0)  # the device's own history the score depends on
        prior = part.filter(pl.col("time") < hour)["value"].to_numpy()
        ctx = prior[len(prior) - keep:] if keep else prior[:0]
        raw = score_continuation(m.det, ctx, inside["value"].to_numpy())
        score = feedback.calibrate(raw, m.threshold)
        parts.append(pl.DataFrame({"time": inside["time"], "tenant_id": tenant, "device_id": device, "metric": metric,
                                   "score": score, "raw": raw, "model_id": m.model_id}))
        used[m.model_id] = f"{tenant}/{dtype or '-'}/{metric} v{m.version} ({m.detector})"
    if not parts:
        return HourScores(hour, SCORES_SCHEMA.empty_table(), used)
    table = pl.concat(parts).filter(pl.col("time") < end).to_arrow().cast(SCORES_SCHEMA)
    return HourScores(hour, table, used)


def scores_path(lake_dir: Path, tenant: str, hour: datetime) -> Path:
    return Path(lake_dir) / "anomaly_scores" / f"tenant={tenant}" / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}.parquet"


def score_hour(conn, lake_dir: Path, hour: datetime, *, context_hours: float = 6.0) -> HourScores:
    """Score one hour with the current models → lake + hot store + alert-engine delivery rows."""
    from alerting.store import SCORES_CHANNEL

    hour = hour_floor(hour)
    models = current_models(conn)
    result = HourScores(hour, SCORES_SCHEMA.empty_table())
    if models:
        df = with_device_types(conn, read_lake(lake_dir, hour - timedelta(hours=context_hours), hour + HOUR))
        result = compute_hour_scores(df, models, hour)
    frame = pl.from_arrow(result.table)
    tenants = sorted(set(frame["tenant_id"].to_list())) if result.rows else []
    for tenant in tenants:
        path = scores_path(lake_dir, tenant, hour)
        write_parquet_atomic(frame.filter(pl.col("tenant_id") == tenant).to_arrow().cast(SCORES_SCHEMA), path)
        result.paths.append(str(path.relative_to(lake_dir)))
    for tenant, path in hour_files(lake_dir, hour, area="anomaly_scores").items():
        if tenant not in tenants:
            path.unlink()  # re-scored without a model for it: lake == store
    with conn.transaction():
        conn.execute("delete from anomaly_scores where time >= %s and time < %s", (hour, hour + HOUR))
        if result.rows:
            with conn.cursor().copy("copy anomaly_scores (time, tenant_id, device_id, metric, score, raw, model_id) "
                                    "from stdin") as copy:
                for row in frame.iter_rows():
                    copy.write_row(row)
            peaks = frame.group_by(["tenant_id", "device_id", "metric"]).agg(
                pl.col("score").max().alias("peak"), pl.len().alias("rows"), pl.col("model_id").first())
            with conn.cursor() as cur:
                cur.executemany(
                    """insert into anomaly_score_batches (tenant_id, device_id, metric, hour, peak, rows, model_id)
                       values (%s, %s, %s, %s, %s, %s, %s)""",
                    [(t, d, m, hour, p, n, mid) for t, d, m, p, n, mid in peaks.iter_rows()])
            conn.execute("select pg_notify(%s, %s)", (SCORES_CHANNEL, hour.isoformat()))
    return result


# ------------------------------------------------------------------ drift


def drift_check(conn, result: HourScores) -> CheckOutcome:
    """Per model: PSI of this hour's raw scores vs. the training window (≥ DRIFT_MIN_SCORES scores)."""
    base = dict(conn.execute("select model_id, baseline from anomaly_models where model_id = any(%s)",
                             (list(result.models),)).fetchall()) if result.models else {}
    conn.commit()
    frame = pl.from_arrow(result.table)
    per_model: dict[str, Any] = {}
    worst = 0.0
    for mid, label in sorted(result.models.items()):
        raw = frame.filter(pl.col("model_id") == mid)["raw"].to_numpy()
        if len(raw) < DRIFT_MIN_SCORES or mid not in base:
            per_model[label] = {"scores": len(raw), "psi": None}
            continue
        value = psi(base[mid], raw)
        worst = max(worst, value)
        per_model[label] = {"scores": len(raw), "psi": round(value, 4),
                            "mean": round(float(raw.mean()), 4), "baseline_mean": round(base[mid]["mean"], 4)}
    return CheckOutcome("score_drift", worst <= DRIFT_PSI_MAX, blocking=False,
                        metadata={"max_psi": round(worst, 4), "psi_limit": DRIFT_PSI_MAX, "models": per_model})
