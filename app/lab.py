"""Detector lab computations: run a registry detector over a series and score it like NAB."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from detectors import nab, registry


@dataclass
class LabResult:
    scores: np.ndarray
    threshold: float
    flagged: np.ndarray  # row indices with score >= threshold (after probation)
    nab: dict[str, dict] = field(default_factory=dict)  # profile → score/threshold/tp/fp/fn


@st.cache_data(ttl=600, show_spinner=False, max_entries=16)
def run_nab_file(key: str, detector: str, params: dict, threshold: float = 0.9) -> LabResult:
    """Score one NAB file the way the benchmark does; threshold = the standard profile's optimum.

    A file without labelled windows has no NAB score (its normalisation divides by zero):
    it is flagged at the given threshold instead."""
    from app import queries

    corpus = queries.nab_corpus(key)
    f = corpus.files[0]
    scores = nab.detect_file(detector, params, f)
    if not f.windows:
        return LabResult(scores, threshold, _flagged(scores, threshold, f.probation))
    results = nab.score_run(corpus, [scores])
    threshold = results["standard"]["threshold"]
    return LabResult(scores, threshold, _flagged(scores, threshold, f.probation), results)


@st.cache_data(ttl=600, show_spinner=False, max_entries=16)
def run_series(values: np.ndarray, detector: str, params: dict, threshold: float) -> LabResult:
    """A fleet series has no labels: NAB-style streaming scores, flagged at a chosen threshold."""
    f = nab.NabFile("fleet/series.csv", [""] * len(values), np.asarray(values, dtype=float), [])
    scores = nab.detect_file(detector, params, f)
    return LabResult(scores, threshold, _flagged(scores, threshold, f.probation))


def _flagged(scores: np.ndarray, threshold: float, probation: int) -> np.ndarray:
    idx = np.flatnonzero(scores >= threshold)
    return idx[idx >= probation]


def validate(detector: str, params: dict) -> dict:
    return registry.validate_params(detector, params)


def backtest_per_day(transitions: list[dict]):
    """Alerts fired, flaps and would-be pages per UTC day from ``run_backtest`` transitions
    (the same definitions as ``alerting.backtest``: a page is a new problem reaching firing
    or flapping; a flap is an entry into flapping)."""
    import polars as pl

    schema = {"day": pl.Date, "alerts": pl.Int64, "flaps": pl.Int64, "pages": pl.Int64}
    if not transitions:
        return pl.DataFrame(schema=schema)
    t = pl.DataFrame(transitions).select(
        pl.col("at").str.to_datetime(time_zone="UTC").dt.date().alias("day"), "alert_id", "from_state", "to_state")
    into_alert = pl.col("to_state").is_in(["firing", "flapping"])
    return (t.group_by("day").agg(
                pl.col("alert_id").filter(into_alert).n_unique().cast(pl.Int64).alias("alerts"),
                ((pl.col("to_state") == "flapping") & (pl.col("from_state") != "flapping")).sum().cast(pl.Int64)
                .alias("flaps"),
                (into_alert & pl.col("from_state").is_in(["inactive", "pending"])).sum().cast(pl.Int64).alias("pages"))
            .sort("day").select(list(schema)))
