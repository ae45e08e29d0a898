"""Operator feedback: labels from resolve/ack reasons (real TimescaleDB), precision on a
hand-built set, the feedback threshold and the calibration map, `pulse detectors precision`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from detectors import feedback as fb
from detectors.cli import app
from tests.alerting.service.conftest import apply_config, fleet_yaml

T = datetime(2026, 3, 2, 12, tzinfo=UTC)


def lab(label, raw_peak=None, detector="robust_z", **kw):
    base = dict(alert_id=f"a{id(kw)}{label}{raw_peak}", tenant_id="t", rule_id="anom", device_id="d1",
                device_type="pump", metric="temp_c", detector=detector, label=label, started_at=T,
                resolved_at=T + timedelta(hours=1), peak=raw_peak, raw_peak=raw_peak)
    base.update(kw)
    return fb.Label(**base)


# ------------------------------------------------------------------ pure


def test_precision_per_detector_on_a_hand_built_set():
    labels = [lab("real_fault"), lab("real_fault"), lab("real_fault"), lab("false_alarm"), lab("maintenance"),
              lab("maintenance"), lab("false_alarm", detector="hst"), lab("false_alarm", detector="hst"),
              lab("maintenance", detector="novelty")]
    got = {r["detector"]: r for r in fb.precision(labels)}
    assert got["robust_z"] == {"detector": "robust_z", "real_fault": 3, "false_alarm": 1, "maintenance": 2,
                               "labelled": 6, "precision": 0.75}
    assert got["hst"]["precision"] == 0.0 and got["hst"]["labelled"] == 2
    assert got["novelty"]["precision"] is None  # maintenance only: nothing judged
    by_device = fb.precision(labels, by=("detector", "device_id"))
    assert by_device[0]["device_id"] == "d1"


def test_calibration_maps_threshold_to_the_reference_level():
    raw = np.linspace(0, 1, 101)
    assert np.allclose(fb.calibrate(raw, 0.8), raw)  # default threshold: identity
    cal = fb.calibrate(raw, 0.9)
    assert np.all(np.diff(cal) >= 0) and cal[0] == 0 and cal[-1] == pytest.approx(1.0)
    assert float(fb.calibrate(0.9, 0.9)) == pytest.approx(fb.REFERENCE_LEVEL)
    assert float(fb.calibrate(0.85, 0.9)) < 0.8 <= float(fb.calibrate(0.95, 0.9))
    assert np.allclose(fb.uncalibrate(cal, 0.9), raw)


def test_feedback_threshold_rises_above_dominating_false_alarms():
    labels = [lab("false_alarm", 0.82), lab("false_alarm", 0.85), lab("false_alarm", 0.9), lab("real_fault", 0.97),
              lab("maintenance", 0.99)]
    d = fb.feedback_threshold(labels)
    assert d.judged == 4 and d.precision_at_reference == 0.25
    # just above the second false alarm: 0.9 (false) and 0.97 (real) remain, precision 1/2
    assert 0.85 < d.threshold < 0.8501 and d.precision_at_threshold == 0.5
    assert "false alarms dominate" in d.reason
    strict = fb.feedback_threshold(labels, target_precision=0.9)
    assert 0.9 < strict.threshold < 0.9001 and strict.precision_at_threshold == 1.0
    lax = fb.feedback_threshold(labels, target_precision=0.3)
    assert lax.threshold == pytest.approx(0.82, abs=1e-6) and lax.precision_at_threshold == pytest.approx(1 / 3)


def test_feedback_threshold_keeps_the_reference_when_precision_is_fine_or_labels_are_few():
    good = [lab("real_fault", 0.9), lab("real_fault", 0.95), lab("false_alarm", 0.85)]
    assert fb.feedback_threshold(good).threshold == fb.REFERENCE_LEVEL
    few = [lab("false_alarm", 0.9), lab("false_alarm", 0.95)]
    d = fb.feedback_threshold(few)
    assert d.threshold == fb.REFERENCE_LEVEL and "< 3" in d.reason
    only_false = [lab("false_alarm", 0.9), lab("false_alarm", 0.995), lab("false_alarm", 0.93)]
    assert fb.feedback_threshold(only_false).threshold == 0.99  # capped


def test_exclusion_windows_cover_maintenance_and_real_faults_not_false_alarms():
    labels = [lab("maintenance"), lab("false_alarm"), lab("real_fault", resolved_at=None, device_id="d2")]
    got = fb.exclusion_windows(labels)
    assert got == [("t", "d1", T - timedelta(hours=1), T + timedelta(hours=2)),
                   ("t", "d2", T - timedelta(hours=1), T + timedelta(hours=1))]


# ------------------------------------------------------------------ database


RULES = """
  - {id: anom, kind: anomaly, metric: temp_c, threshold: 0.8}
  - {id: anom-live, kind: anomaly, metric: temp_c, threshold: 0.9, streaming: true, detector: novelty, warmup: 50}
  - {id: hot, kind: threshold, metric: temp_c, op: ">", value: 80}
"""


def add_alert(conn, tenant, rule, device, n, peak, *, started=None):
    from psycopg.types.json import Jsonb

    started = started or datetime.now(UTC)
    alert_id = f"{tenant}/{rule}/{device}@{n}#1"
    conn.execute(
        """insert into alerts (alert_id, fingerprint, tenant_id, rule_id, subject, device_id, severity, state,
                               value, labels, started_at, last_seen)
           values (%s, %s, %s, %s, %s, %s, 'warning', 'firing', 0.1, %s, %s, %s)""",
        (alert_id, f"{tenant}/{rule}/{device}", tenant, rule, device, device, Jsonb({}), started, started))
    conn.execute("""insert into alert_events (alert_id, at, from_state, to_state, action, actor, value)
                    values (%s, %s, 'inactive', 'firing', 'transition', 'engine', %s)""", (alert_id, started, peak))
    conn.commit()
    return alert_id


def seed_labels(url, tenant):
    """robust_z (batch model, threshold 0.9): 2 real faults, 1 false alarm, 1 maintenance;
    novelty (streaming rule): 1 false alarm given as an ack comment; a threshold rule's
    resolution and an 'other' resolution are not labels."""
    from alerting import api

    apply_config(url, fleet_yaml(tenant, RULES))
    with psycopg.connect(url) as conn:
        conn.execute(
            """insert into anomaly_models (tenant_id, device_type, metric, version, detector, params, threshold,
                   train_start, train_end, n_points, n_devices, baseline, model, created_at)
               values (%s, 'pump', 'temp_c', 1, 'robust_z', '{}', 0.9, %s, %s, 0, 0, '{}', '\\x00', now() - interval '1 hour')""",
            (tenant, T - timedelta(days=1), T))
        conn.commit()
        for n, (peak, reason) in enumerate([(0.95, "real_fault"), (0.99, "real_fault"), (0.85, "false_alarm"),
                                            (0.9, "maintenance"), (0.97, "other")]):
            api.resolve(conn, add_alert(conn, tenant, "anom", "d1", n, peak), user="op", reason=reason)
        live = add_alert(conn, tenant, "anom-live", "d2", 10, 0.93)
        api.acknowledge(conn, live, user="op", comment="False alarm")
        api.resolve(conn, add_alert(conn, tenant, "hot", "d1", 20, 95.0), user="op", reason="false_alarm")


def test_labels_from_resolve_and_ack_reasons_are_attributed_to_detectors(pg_url, unique):
    tenant = f"t{unique}"
    seed_labels(pg_url, tenant)
    with psycopg.connect(pg_url) as conn:
        labels = fb.load_labels(conn, tenant)
    got = sorted((x.rule_id, x.detector, x.label, x.peak) for x in labels)
    assert got == [("anom", "robust_z", "false_alarm", 0.85), ("anom", "robust_z", "maintenance", 0.9),
                   ("anom", "robust_z", "real_fault", 0.95), ("anom", "robust_z", "real_fault", 0.99),
                   ("anom-live", "novelty", "false_alarm", 0.93)]
    batch = [x for x in labels if x.rule_id == "anom"]
    assert all(x.model_id is not None for x in batch)
    # raw peaks undo the model's calibration (threshold 0.9 ↦ 0.8)
    assert {round(x.peak, 2): round(x.raw_peak, 4) for x in batch}[0.85] == pytest.approx(0.9 + 0.05 * 0.1 / 0.2)
    live = [x for x in labels if x.rule_id == "anom-live"][0]
    assert live.raw_peak == live.peak == 0.93
    rows = {r["detector"]: r for r in fb.precision(labels)}
    assert rows["robust_z"]["precision"] == pytest.approx(2 / 3) and rows["robust_z"]["maintenance"] == 1
    assert rows["novelty"]["precision"] == 0.0


def test_cli_precision_json_and_table(pg_url, unique, monkeypatch):
    tenant = f"t{unique}"
    seed_labels(pg_url, tenant)
    monkeypatch.setenv("PULSE_DATABASE_URL", pg_url)
    runner = CliRunner()
    res = runner.invoke(app, ["precision", "--tenant", tenant, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["labelled_alerts"] == 5
    assert {d["detector"]: d["precision"] for d in out["detectors"]} == {"novelty": 0.0, "robust_z": 2 / 3}
    res = runner.invoke(app, ["precision"])
    assert res.exit_code == 0 and "robust_z" in res.stdout and "0.67" in res.stdout
    res = runner.invoke(app, ["precision", "--tenant", "nobody"])
    assert res.exit_code == 0 and "no labelled anomaly alerts yet" in res.stdout


def test_cli_precision_unreachable_database_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PULSE_DATABASE_URL", "postgresql://pulse:pulse@127.0.0.1:1/none")
    res = CliRunner().invoke(app, ["precision"])
    assert res.exit_code == 2 and "cannot connect to PostgreSQL" in res.output and "Traceback" not in res.output
