"""Anomaly models and scores against the real TimescaleDB and a lake in a temp dir:
training records versions, scoring writes lake + hot store, a planted spike raises an
alert through the live alert service, drift, feedback-driven retraining, Dagster wiring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import psycopg
import pytest

from assets import anomalies as an
from assets.lake import TELEMETRY_SCHEMA, telemetry_path, write_parquet_atomic
from tests.alerting.service.conftest import apply_config, fleet_yaml, rows, wait_rows

pytestmark = pytest.mark.timescale

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)  # the scored hour
SPIKE = T0 + timedelta(minutes=30)
SETTINGS = an.TrainSettings(detector="robust_z", window_days=1.0, min_points=200)
RULES = """
  - {id: anom, kind: anomaly, metric: temp_c, threshold: 0.8, severity: warning}
"""


def write_lake(lake, tenant, devices=("d1", "d2"), start=T0 - timedelta(days=1), hours=25, spike=("d1", SPIKE),
               shift=0.0):
    """1-minute readings of temp_c (smooth + noise) per device; one planted spike."""
    rng = np.random.default_rng(7)
    n = hours * 60
    times = [start + timedelta(minutes=i) for i in range(n)]
    frames = []
    for k, dev in enumerate(devices):
        vals = 20 + np.sin(np.arange(n) / 15 + k) + rng.normal(0, 0.1, n)
        vals[[i for i, t in enumerate(times) if t >= T0]] += shift
        if spike is not None and spike[0] == dev:
            vals[times.index(spike[1])] += 40.0
        frames.append(pl.DataFrame({"time": times, "tenant_id": tenant, "device_id": dev, "metric": "temp_c",
                                    "value": vals}))
    df = pl.concat(frames).with_columns(pl.col("time").dt.cast_time_unit("us"))
    for h in range(hours):
        hour = start + timedelta(hours=h)
        part = df.filter((pl.col("time") >= hour) & (pl.col("time") < hour + timedelta(hours=1)))
        write_parquet_atomic(part.to_arrow().cast(TELEMETRY_SCHEMA), telemetry_path(lake, tenant, hour))


@pytest.fixture
def fleet(pg_url, unique, tmp_path):
    tenant = f"t{unique}"
    apply_config(pg_url, fleet_yaml(tenant, RULES))
    lake = tmp_path / "lake"
    return tenant, lake


def _train(url, lake, settings=SETTINGS):
    with psycopg.connect(url) as conn:
        return an.train_models(conn, lake, end=T0, settings=settings)


def test_training_records_a_model_version(pg_url, fleet):
    tenant, lake = fleet
    write_lake(lake, tenant)
    (v1,) = _train(pg_url, lake)
    assert (v1.tenant_id, v1.device_type, v1.metric, v1.version, v1.detector) == (tenant, "pump", "temp_c", 1, "robust_z")
    assert v1.n_devices == 2 and v1.n_points == 2 * 24 * 60 and v1.threshold == 0.8
    (v2,) = _train(pg_url, lake)
    got = rows(pg_url, "select version, is_current, train_start, train_end, detector, params->>'window', "
                       "octet_length(model) > 0, (baseline->>'n')::int from anomaly_models order by version")
    assert [(r[0], r[1]) for r in got] == [(1, False), (2, True)]
    assert got[1][2:5] == (T0 - timedelta(days=1), T0, "robust_z") and got[1][6] and got[1][7] > 2000
    assert v2.version == 2


def test_scoring_writes_lake_and_hot_store(pg_url, fleet):
    tenant, lake = fleet
    write_lake(lake, tenant)
    _train(pg_url, lake)
    with psycopg.connect(pg_url) as conn:
        res = an.score_hour(conn, lake, T0 + timedelta(minutes=5))
    assert res.rows == 120 and len(res.models) == 1
    files = list((lake / "anomaly_scores" / f"tenant={tenant}").rglob("*.parquet"))
    assert [f.relative_to(lake).as_posix() for f in files] == [f"anomaly_scores/tenant={tenant}/date=2026-03-02/hour=12.parquet"]
    df = pl.read_parquet(files[0])
    assert df.height == 120 and df["score"].is_between(0, 1).all()
    spike = df.filter((pl.col("device_id") == "d1") & (pl.col("time") == SPIKE))
    assert spike["score"][0] >= 0.8 and df.filter(pl.col("time") != SPIKE)["score"].max() < 0.8
    db = rows(pg_url, "select count(*), max(score) from anomaly_scores where tenant_id = %s", (tenant,))
    assert db[0][0] == 120 and db[0][1] == pytest.approx(spike["score"][0])
    batches = rows(pg_url, "select device_id, metric, rows, delivered_at from anomaly_score_batches order by 1")
    assert [(b[0], b[1], b[2], b[3]) for b in batches] == [("d1", "temp_c", 60, None), ("d2", "temp_c", 60, None)]
    # re-scoring the hour replaces its rows
    with psycopg.connect(pg_url) as conn:
        an.score_hour(conn, lake, T0)
    assert rows(pg_url, "select count(*) from anomaly_scores") == [(120,)]


def test_planted_spike_raises_an_alert_through_the_alert_service(pg_url, fleet):
    from alerting.service import AlertService

    tenant, lake = fleet
    write_lake(lake, tenant)
    _train(pg_url, lake)
    svc = AlertService(pg_url, snapshot_interval_s=3600, config_check_s=3600)
    svc.start()
    try:
        with psycopg.connect(pg_url) as conn:
            an.score_hour(conn, lake, T0)
        got = wait_rows(pg_url, "select alert_id, state, device_id, value from alerts where tenant_id = %s "
                                "and rule_id = 'anom'", (tenant,), message="anomaly alert")
        assert [(g[1], g[2]) for g in got] == [("firing", "d1")] and got[0][3] >= 0.8
        ev = rows(pg_url, "select from_state, to_state, actor, reason from alert_events where alert_id = %s",
                  (got[0][0],))
        assert ev[0][:3] == ("inactive", "firing", "engine") and "anomaly_score.temp_c >= 0.8" in ev[0][3]
        wait_rows(pg_url, "select 1 from anomaly_score_batches where delivered_at is not null", n=2,
                  message="batches delivered")
        # the next hour has no spike: the alert resolves on the next batch
        write_lake(lake, tenant, start=T0 + timedelta(hours=1), hours=1, spike=None)
        with psycopg.connect(pg_url) as conn:
            an.score_hour(conn, lake, T0 + timedelta(hours=1))
        wait_rows(pg_url, "select 1 from alerts where tenant_id = %s and state = 'resolved'", (tenant,),
                  message="resolved on the next batch")
    finally:
        svc.stop()


def test_drift_check_flags_a_shifted_hour(pg_url, fleet):
    tenant, lake = fleet
    write_lake(lake, tenant, devices=("d1", "d2"), spike=None)
    _train(pg_url, lake)
    with psycopg.connect(pg_url) as conn:
        same = an.drift_check(conn, an.score_hour(conn, lake, T0))
    assert same.passed and same.metadata["max_psi"] <= an.DRIFT_PSI_MAX
    write_lake(lake, tenant, start=T0, hours=1, spike=None, shift=0.0)
    # a noisier hour (variance ×20) shifts the score distribution
    rng = np.random.default_rng(3)
    path = telemetry_path(lake, tenant, T0)
    df = pl.read_parquet(path).with_columns(pl.col("value") + pl.Series(rng.normal(0, 2.0, 120)))
    write_parquet_atomic(df.to_arrow().cast(TELEMETRY_SCHEMA), path)
    with psycopg.connect(pg_url) as conn:
        drifted = an.drift_check(conn, an.score_hour(conn, lake, T0))
    assert not drifted.passed and drifted.metadata["max_psi"] > an.DRIFT_PSI_MAX
    (model,) = drifted.metadata["models"].values()
    assert model["scores"] == 120 and model["psi"] > an.DRIFT_PSI_MAX


def test_psi_and_baseline_are_consistent():
    rng = np.random.default_rng(0)
    base = an.baseline(rng.uniform(0, 0.3, 5000), 0.8)
    assert sum(base["props"]) == pytest.approx(1.0) and base["alert_rate"] == 0.0
    assert an.psi(base, rng.uniform(0, 0.3, 2000)) < 0.05
    assert an.psi(base, rng.uniform(0.5, 1.0, 2000)) > 1.0


def test_unknown_detector_is_a_user_error(pg_url, fleet):
    from pulse.errors import UserError

    tenant, lake = fleet
    with pytest.raises(UserError, match="unknown detector 'nope'"):
        _train(pg_url, lake, an.TrainSettings(detector="nope"))
    with pytest.raises(UserError, match="invalid parameters for robust_z"):
        _train(pg_url, lake, an.TrainSettings(detector="robust_z", params={"window": -3}))


def test_feedback_labels_change_retraining(pg_url, fleet):
    """False alarms dominating raise the new version's threshold; a maintenance window is
    left out of the training data; the spike's calibrated score drops below the rule."""
    from tests.detectors.test_feedback import add_alert
    from alerting import api

    tenant, lake = fleet
    write_lake(lake, tenant)
    (v1,) = _train(pg_url, lake)
    with psycopg.connect(pg_url) as conn:
        for n, (peak, reason) in enumerate([(0.82, "false_alarm"), (0.86, "false_alarm"), (0.95, "false_alarm"),
                                            (0.99, "real_fault")]):
            api.resolve(conn, add_alert(conn, tenant, "anom", "d1", n, peak), user="op", reason=reason)
        maint = add_alert(conn, tenant, "anom", "d2", 9, 0.9, started=T0 - timedelta(hours=5))
        conn.execute("update alerts set started_at = %s where alert_id = %s", (T0 - timedelta(hours=5), maint))
        conn.commit()
        api.resolve(conn, maint, user="op", reason="maintenance")
        conn.execute("update alerts set resolved_at = %s where alert_id = %s", (T0 - timedelta(hours=4), maint))
        conn.commit()
    (v2,) = _train(pg_url, lake)
    assert v1.threshold == 0.8 and v1.excluded_points == 0
    assert 0.86 < v2.threshold < 0.8601  # just above the second false alarm: precision 1/2 above it
    assert v2.feedback["judged"] == 4 and v2.feedback["precision_at_reference"] == 0.25
    assert v2.excluded_points == 181 and v2.n_points == 2 * 24 * 60 - 181  # d2, T0-6h .. T0-3h inclusive
    assert rows(pg_url, "select threshold from anomaly_models where is_current") == [(v2.threshold,)]
    with psycopg.connect(pg_url) as conn:
        res = an.score_hour(conn, lake, T0)
    df = pl.from_arrow(res.table)
    spike = df.filter((pl.col("device_id") == "d1") & (pl.col("time") == SPIKE))
    if spike["raw"][0] < v2.threshold:
        assert spike["score"][0] < 0.8
    assert np.allclose(df["score"].to_numpy(), an.feedback.calibrate(df["raw"].to_numpy(), v2.threshold))


def test_dagster_materialize_feedback_models_and_scores(pg_url, fleet):
    import dagster as dg

    from assets.defs_anomalies import anomaly_feedback, anomaly_models, anomaly_scores
    from pipelines.resources import AnalyticsSettings, PulseDatabase, PulseLake

    tenant, lake = fleet
    write_lake(lake, tenant)
    res = {"db": PulseDatabase(url=pg_url), "lake": PulseLake(lake_dir=str(lake)), "analytics": AnalyticsSettings()}
    train = {"ops": {"anomaly_models": {"config": {"detector": "robust_z", "window_days": 1.0,
                                                   "train_end": T0.isoformat()}}}}
    with dg.instance_for_test() as instance:
        result = dg.materialize([anomaly_feedback, anomaly_models], resources=res, instance=instance,
                                run_config=train)
        assert result.success
        meta = result.asset_materializations_for_node("anomaly_models")[0].metadata
        assert meta["models"].value == 1
        (version,) = meta["versions"].value.values()
        assert version["version"] == 1 and version["detector"] == "robust_z" and version["points"] == 2880
        fb_meta = result.asset_materializations_for_node("anomaly_feedback")[0].metadata
        assert fb_meta["labelled_alerts"].value == 0
        scored = dg.materialize([anomaly_scores], partition_key=T0.strftime("%Y-%m-%d-%H:%M"), resources=res,
                                instance=instance)
        assert scored.success
        meta = scored.asset_materializations_for_node("anomaly_scores")[0].metadata
        assert meta["rows"].value == 120 and "v1 (robust_z)" in next(iter(meta["model_versions"].value.values()))
        (check,) = scored.get_asset_check_evaluations()
        assert check.check_name == "score_drift" and check.passed
    assert rows(pg_url, "select check_name, passed from asset_check_results where asset_key = 'anomaly_scores'") \
        == [("score_drift", True)]
