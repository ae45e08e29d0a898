"""Harness and CLI on 3 small NAB files (skipped without the corpus) plus user-error paths."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from detectors.cli import app
from detectors.nab import NabNotFoundError, load_corpus, read_results, resolve_nab_dir, run_corpus, write_results

SMALL = ["speed_7578.csv", "iio_us-east-1_i-a2eb1cd9_NetworkIn.csv", "exchange-3_cpc_results.csv"]
runner = CliRunner()


@pytest.fixture(scope="module")
def nab_dir():
    try:
        return resolve_nab_dir()
    except NabNotFoundError as exc:
        pytest.skip(f"NAB corpus absent: {exc}")


def test_run_write_read_roundtrip(nab_dir, tmp_path):
    corpus = load_corpus(nab_dir, only=SMALL)
    assert len(corpus.files) == 3
    run = run_corpus("ensemble", corpus)
    assert set(run.results) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    for s, f in zip(run.scores, corpus.files):
        assert len(s) == len(f.values) and (s >= 0).all() and (s <= 1).all()
        assert (s[: f.probation] == 0).all()
    base = write_results(run, corpus, tmp_path)
    f = corpus.files[0]
    path = base / f.category / f"ensemble_{f.name}"
    with path.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["timestamp", "value", "anomaly_score", "label"]
    assert len(rows) - 1 == len(f.values)
    assert [r[0] for r in rows[1:]] == f.timestamps  # file order kept
    assert sum(int(r[3]) for r in rows[1:]) == sum(e - s + 1 for s, e in f.windows)
    back = read_results(corpus, tmp_path, "ensemble")
    for a, b in zip(back, run.scores):
        np.testing.assert_array_equal(a, b)


def test_cli_nab_json_and_leaderboard(nab_dir, tmp_path, monkeypatch):
    import detectors.cli as cli_mod
    import detectors.nab as nab_mod

    real = nab_mod.load_corpus
    monkeypatch.setattr(nab_mod, "load_corpus", lambda root=None, only=None: real(root, only=SMALL))
    res = runner.invoke(app, ["nab", "--detector", "default", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["detector"] == "ensemble"
    for key in ("standard", "reward_low_FP_rate", "reward_low_FN_rate", "runtime_s", "points_per_s"):
        assert isinstance(out[key], float)
    # results are named as given on the command line (the DIR/NAME/<category>/NAME_<file>.csv)
    assert (tmp_path / "default" / "realTraffic" / "default_speed_7578.csv").is_file()
    res = runner.invoke(app, ["leaderboard", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    board = json.loads(res.stdout)
    names = [r["detector"] for r in board["rows"]]
    assert "pulse:ensemble" in names and "ARTime" in names and "null" in names
    assert board.get("source", str(tmp_path / "default")).endswith("default")  # read from disk, not recomputed
    ours = next(r for r in board["rows"] if r["ours"])
    assert ours["standard"] == pytest.approx(out["standard"], abs=1e-3)
    assert cli_mod.app is app


def test_cli_list_shows_every_detector():
    res = runner.invoke(app, ["list", "--json"])
    assert res.exit_code == 0
    names = {d["name"] for d in json.loads(res.stdout)}
    assert {"ensemble", "robust_z", "iforest", "hst", "changepoint", "ewma"} <= names


@pytest.mark.parametrize(
    "args, needle",
    [
        (["nab", "--detector", "nope"], "unknown detector 'nope'"),
        (["nab", "--params", "{not json"], "--params is not valid JSON"),
        (["nab", "--params", "[1]"], "must be a JSON object"),
        (["nab", "--params", '{"bins": 0}'], "invalid parameters for ensemble"),
        (["nab", "--nab-dir", "/definitely/not/here"], "git clone https://github.com/numenta/NAB"),
        (["leaderboard", "--nab-dir", "/definitely/not/here"], "PULSE_NAB_DIR"),
    ],
)
def test_user_errors_are_one_line_and_nonzero(args, needle):
    res = runner.invoke(app, args)
    assert res.exit_code != 0
    assert res.exception is None or isinstance(res.exception, SystemExit)
    text = " ".join(res.output.split())
    assert needle in text
    assert "Traceback" not in res.output


def test_missing_nab_dir_from_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("PULSE_NAB_DIR", str(tmp_path / "nab"))
    with pytest.raises(NabNotFoundError, match="PULSE_NAB_DIR"):
        resolve_nab_dir()
