"""One contract test over every registered detector (fast: short synthetic series)."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import registry
from detectors.base import NotFittedError

NAMES = registry.names()


def _series(n: int = 600, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + np.sin(2 * np.pi * t / 50) + 0.2 * rng.standard_normal(n)


def _fitted(name: str, x: np.ndarray):
    # small, fast settings where a detector has expensive defaults
    params = {"iforest": {"n_estimators": 20}, "hst": {"n_trees": 5, "window_size": 50}}.get(name, {})
    return registry.create(name, **params).fit(x[:300])


def test_registry_lists_the_required_detectors():
    assert {"robust_z", "ewma", "iforest", "hst", "changepoint", "ensemble", "novelty"} <= set(NAMES)
    assert registry.get("default") is registry.get(registry.DEFAULT)
    with pytest.raises(registry.UnknownDetectorError):
        registry.get("no-such-detector")


def test_describe_gives_typed_specs():
    for d in registry.describe():
        assert d["params"], d["name"]
        for p in d["params"]:
            assert set(p) >= {"name", "type", "default", "bounds", "help"}
            assert p["help"], (d["name"], p["name"])
            assert p["type"] in {"int", "float", "bool", "str", "choice"} or "|" in p["type"]


@pytest.mark.parametrize("name", NAMES)
def test_contract(name):
    x = _series()
    spike_at = 450
    x_spiked = x.copy()
    x_spiked[spike_at] += 8.0

    det = registry.create(name)
    assert not [k for k in vars(det) if k.endswith("_")], "__init__ must not create fitted state"
    with pytest.raises(NotFittedError):
        det.score(x)

    a = _fitted(name, x_spiked)
    assert any(k.endswith("_") for k in vars(a)), "fitted state ends in _"
    s1 = a.score(x_spiked[300:])
    # deterministic refit, and scoring does not mutate the fitted state
    s2 = _fitted(name, x_spiked).score(x_spiked[300:])
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(s1, a.score(x_spiked[300:]))

    assert s1.shape == (300,)
    assert np.isfinite(s1).all() and (s1 >= 0).all() and (s1 <= 1).all()

    # the planted spike beats its neighbourhood (window detectors may echo it for a few rows)
    i = spike_at - 300
    neighbourhood = np.r_[s1[i - 40 : i - 1], s1[i + 10 : i + 40]]
    assert s1[i] > neighbourhood.max(), (s1[i], neighbourhood.max())

    # NaN never crashes and never yields NaN
    x_nan = x_spiked[300:].copy()
    x_nan[[0, 5, 6, 100]] = np.nan
    s_nan = a.score(x_nan)
    assert np.isfinite(s_nan).all() and (s_nan >= 0).all() and (s_nan <= 1).all()
    assert s_nan[5] == 0.0
    all_nan = registry.create(name, **({"n_estimators": 5} if name == "iforest" else {}))
    all_nan.fit(np.full(50, np.nan))
    assert np.isfinite(all_nan.score(np.full(20, np.nan))).all()


@pytest.mark.parametrize("name", NAMES)
def test_streaming_update_matches_batch(name):
    x = _series(420)
    x[380] += 6.0
    x[390] = np.nan
    det = _fitted(name, x)
    batch = det.score(x[300:])
    det.reset_stream()
    stream = np.array([det.update(t, v) for t, v in enumerate(x[300:])])
    assert np.isfinite(stream).all() and (stream >= 0).all() and (stream <= 1).all()
    # EWMA keeps a truncated memory in streaming (weight < 1e-8 dropped)
    np.testing.assert_allclose(stream, batch, rtol=1e-6, atol=1e-7)


def test_invalid_params_are_rejected():
    with pytest.raises(registry.InvalidParamsError):
        registry.validate_params("robust_z", {"window": 0})
    with pytest.raises(registry.InvalidParamsError):
        registry.validate_params("robust_z", {"no_such_param": 1})
