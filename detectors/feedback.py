"""Operator feedback on anomaly alerts: labels, measured precision, threshold calibration.

Labels come from the ``anomaly_labels`` view (migration 0008): alerts raised by ``anomaly``
rules whose operator resolve reason — or an ack whose comment is one of the reasons — is
``real_fault``, ``false_alarm`` or ``maintenance``.

* **Precision** of a detector = real faults / (real faults + false alarms) over its labelled
  alerts. Maintenance alerts are neither: the anomaly was real but expected.
* **Calibration.** A model version carries a raw-score ``threshold``; the score written for
  the alert engine is ``calibrate(raw, threshold)``, a monotone piecewise-linear map that
  sends ``threshold`` to ``REFERENCE_LEVEL`` (0.8, the default threshold of an ``anomaly``
  rule) and keeps 0 → 0 and 1 → 1. Without feedback ``threshold`` = 0.8 (identity).
* **Feedback threshold** (:func:`feedback_threshold`): when the labelled alerts that the
  reference threshold would raise have precision below ``target_precision`` (false alarms
  dominate), the threshold becomes the smallest raw level at which the labelled alerts
  above it reach the target — i.e. just above the false alarms' peaks. It is recomputed
  from all labels at every retraining (a function of the labels, not a ratchet), never
  below the reference and never above ``max_threshold``, and needs ``min_labels`` judged
  alerts before it moves.
* **Training exclusions** (:func:`exclusion_windows`): data around maintenance and
  real-fault alerts is left out of retraining (the model should not learn them as normal);
  false alarms stay in (they are normal behaviour the model should learn).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

LABELS = ("real_fault", "false_alarm", "maintenance")
REFERENCE_LEVEL = 0.8


# ------------------------------------------------------------------ calibration


def calibrate(raw: Any, threshold: float, level: float = REFERENCE_LEVEL) -> np.ndarray:
    """Raw detector score(s) → calibrated score: ``threshold`` ↦ ``level``, monotone, [0, 1]."""
    r = np.clip(np.asarray(raw, dtype=float), 0.0, 1.0)
    t = min(max(float(threshold), 1e-9), 1 - 1e-9)
    return np.where(r < t, r * level / t, level + (r - t) * (1 - level) / (1 - t))


def uncalibrate(score: Any, threshold: float, level: float = REFERENCE_LEVEL) -> np.ndarray:
    """Inverse of :func:`calibrate`."""
    s = np.clip(np.asarray(score, dtype=float), 0.0, 1.0)
    t = min(max(float(threshold), 1e-9), 1 - 1e-9)
    return np.where(s < level, s * t / level, t + (s - level) * (1 - t) / (1 - level))


# ------------------------------------------------------------------ labels


@dataclass(frozen=True)
class Label:
    alert_id: str
    tenant_id: str
    rule_id: str
    device_id: str | None
    device_type: str
    metric: str
    detector: str
    label: str
    started_at: datetime
    resolved_at: datetime | None
    peak: float | None  # highest score the alert saw (calibrated for batch rules)
    raw_peak: float | None  # the detector's raw score at that peak
    model_id: int | None = None  # batch rules: the model version in force when the alert opened

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_labels(conn, tenant: str | None = None) -> list[Label]:
    """Labelled anomaly alerts, oldest first, each attributed to the detector that raised it:
    the rule's detector for streaming rules, else the model version current when it opened."""
    from detectors import registry

    default = registry.canonical("default")
    rows = conn.execute(
        """select l.alert_id, l.tenant_id, l.rule_id, l.device_id, l.device_type, l.metric, l.streaming,
                  l.rule_detector, l.label, l.started_at, l.resolved_at, l.peak, m.model_id, m.detector, m.threshold
           from anomaly_labels l
           left join lateral (
               select model_id, detector, threshold from anomaly_models m
               where not l.streaming and m.tenant_id = l.tenant_id and m.device_type = l.device_type
                 and m.metric = l.metric and m.created_at <= l.started_at
               order by m.created_at desc, m.model_id desc limit 1) m on true
           where %s::text is null or l.tenant_id = %s
           order by l.started_at, l.alert_id""", (tenant, tenant)).fetchall()
    conn.commit()
    out = []
    for (alert_id, tenant_id, rule_id, device_id, dtype, metric, streaming, rule_det, label, started, resolved,
         peak, model_id, model_det, threshold) in rows:
        if streaming:
            try:
                detector = registry.canonical(rule_det or "default")
            except registry.UnknownDetectorError:  # renamed since the alert: keep the name it had
                detector = rule_det or default
            raw = peak
        else:
            detector = model_det or rule_det or "unknown"
            raw = None if peak is None or threshold is None else float(uncalibrate(peak, threshold))
        out.append(Label(alert_id, tenant_id, rule_id, device_id, dtype or "", metric or "", detector, label,
                         started, resolved, peak, raw, model_id))
    return out


def precision(labels: Iterable[Label], by: Sequence[str] = ("detector",)) -> list[dict[str, Any]]:
    """Measured precision per group (default: per detector), with the label counts.
    ``precision`` is None when a group has no real-fault or false-alarm label."""
    groups: dict[tuple, dict[str, int]] = {}
    for lab in labels:
        key = tuple(getattr(lab, k) for k in by)
        counts = groups.setdefault(key, dict.fromkeys(LABELS, 0))
        counts[lab.label] += 1
    out = []
    for key in sorted(groups):
        c = groups[key]
        judged = c["real_fault"] + c["false_alarm"]
        out.append({**dict(zip(by, key)), **c, "labelled": sum(c.values()),
                    "precision": None if judged == 0 else c["real_fault"] / judged})
    return out


# ------------------------------------------------------------------ retraining inputs


@dataclass(frozen=True)
class ThresholdDecision:
    threshold: float
    reason: str
    judged: int
    precision_at_reference: float | None
    precision_at_threshold: float | None


def _precision_above(judged: Sequence[tuple[float, str]], t: float) -> float | None:
    kept = [lab for peak, lab in judged if peak >= t]
    if not kept:
        return None
    return kept.count("real_fault") / len(kept)


def feedback_threshold(labels: Iterable[Label], *, reference: float = REFERENCE_LEVEL,
                       target_precision: float = 0.5, min_labels: int = 3,
                       max_threshold: float = 0.99) -> ThresholdDecision:
    """The raw-score threshold of a new model version from labelled alerts (see module doc)."""
    judged = sorted((float(lab.raw_peak), lab.label) for lab in labels
                    if lab.label in ("real_fault", "false_alarm") and lab.raw_peak is not None)
    at_ref = _precision_above(judged, reference)
    if len(judged) < min_labels:
        return ThresholdDecision(reference, f"{len(judged)} judged alert(s) < {min_labels}: reference kept",
                                 len(judged), at_ref, at_ref)
    if at_ref is None or at_ref >= target_precision:
        return ThresholdDecision(reference, "precision meets the target: reference kept", len(judged), at_ref, at_ref)
    # candidate levels: just above each false alarm's peak, lowest first
    for peak, lab in judged:
        if lab != "false_alarm" or peak < reference:
            continue
        t = min(np.nextafter(peak, 2.0), max_threshold)
        p = _precision_above(judged, t)
        if p is None or p >= target_precision or t >= max_threshold:
            return ThresholdDecision(float(t), f"false alarms dominate (precision {at_ref:.2f} < "
                                     f"{target_precision:.2f}): raised above their peaks", len(judged), at_ref, p)
    return ThresholdDecision(max_threshold, "false alarms dominate: capped", len(judged), at_ref,
                             _precision_above(judged, max_threshold))


def exclusion_windows(labels: Iterable[Label], pad: timedelta = timedelta(hours=1),
                      kinds: Sequence[str] = ("maintenance", "real_fault")) -> list[tuple[str, str, datetime, datetime]]:
    """(tenant, device, start, end) ranges to leave out of training: the alert's span, padded
    by ``pad`` before (a batch alert opens after the hour it scored) and after (an open or
    just-resolved fault)."""
    out = []
    for lab in labels:
        if lab.label in kinds and lab.device_id is not None:
            end = lab.resolved_at or lab.started_at
            out.append((lab.tenant_id, lab.device_id, lab.started_at - pad, end + pad))
    return out
