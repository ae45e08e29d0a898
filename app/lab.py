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
