"""Attacks on studies: trials that keep failing, budgets, parallel TPE workers proposing the same point,
and the table of a study where nothing finished. They use the hidden `_quadratic` objective (no training)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from attack_kit import assert_clean, assert_refused

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
#: Subprocesses import bench from the same place this test does.
PYTHONPATH = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p)


def quad_spec(path: Path, **changes) -> Path:
    raw = {"name": "quad", "method": "_quadratic", "dataset": "toy", "preset": "smoke",
           "overrides": {"epochs": 1, "marker_dir": str(path.parent / "markers")},
           "search_space": {"x": {"type": "float", "low": -3.0, "high": 3.0}},
           "objective": {"metric": "fid"}, "seeds": [0], "n_trials": 8, "sampler": {"type": "tpe", "seed": 0}}
    raw.update(changes)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _study(path: Path):
    from bench.studies.run import load_existing, open_handle
    from bench.studies.spec import load_spec

    spec = load_spec(path)
    return load_existing(spec, open_handle(spec, create=False))


@pytest.fixture
def brake(monkeypatch):
    """Count trials; on today's code a failing study never stops, so interrupt it after 30."""
    import bench.studies.run as study_run

    original, calls = study_run.run_trial, []

    def counted(*args, **kwargs):
        calls.append(1)
        if len(calls) > 30:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(study_run, "run_trial", counted)
    return calls


def test_a_study_whose_trials_all_fail_stops_with_the_first_error(bench, tmp_path, brake):
    path = quad_spec(tmp_path / "quad.yaml", overrides={"epochs": 1, "fail": True}, n_trials=20)
    res = bench("study", "run", path, "--no-tracking")
    line = assert_refused(res, 1, "_quadratic asked to fail", "trial 0", "3 consecutive")
    assert "max_failed_trials" in line  # says how to change the limit
    assert len(brake) == 3  # the default max_failed_trials
    states = [t.state for t in _study(path).trials]
    assert states == [TrialState.FAIL] * 3


def test_a_rerun_after_the_fix_runs_trials_again(bench, tmp_path, monkeypatch):
    import bench.studies.run as study_run

    path = quad_spec(tmp_path / "quad.yaml", n_trials=6)
    original, calls = study_run.run_trial, []

    def broken(*args, **kwargs):
        calls.append(1)
        if len(calls) > 30:  # today's code never stops a failing study
            raise KeyboardInterrupt
        raise RuntimeError("weights file missing")

    monkeypatch.setattr(study_run, "run_trial", broken)
    assert_refused(bench("study", "run", path, "--no-tracking"), 1, "weights file missing")
    monkeypatch.setattr(study_run, "run_trial", original)  # fixed
    res = bench("study", "run", path, "--no-tracking")
    assert res.code == 0, res.err
    states = [t.state for t in _study(path).trials]
    assert states == [TrialState.FAIL] * 3 + [TrialState.COMPLETE] * 3  # the failures used their share of budget


def test_max_failed_trials_is_a_spec_key(bench, tmp_path, brake):
    path = quad_spec(tmp_path / "quad.yaml", overrides={"epochs": 1, "fail": True}, n_trials=20, max_failed_trials=5)
    assert_refused(bench("study", "run", path, "--no-tracking"), 1, "5 consecutive")
    assert len(brake) == 5


def test_failed_trials_count_toward_the_budget(bench, tmp_path, brake):
    path = quad_spec(tmp_path / "quad.yaml", n_trials=4, max_failed_trials=3,
                     search_space={"x": {"type": "float", "low": -3.0, "high": 3.0},
                                   "fail": {"type": "categorical", "choices": [True, False]}},
                     enqueue=[{"x": 0.0, "fail": True}, {"x": 1.0, "fail": False},
                              {"x": 2.0, "fail": True}, {"x": 0.5, "fail": False}])
    res = bench("study", "run", path, "--no-tracking")
    assert res.code == 0, res.err
    study = _study(path)
    assert len(study.trials) == 4 and len(brake) == 4
    assert [t.state for t in study.trials].count(TrialState.FAIL) == 2
    summary = json.loads(res.out.strip().splitlines()[-1])
    assert summary["trials"]["fail"] == 2 and summary["done"] is True


def test_a_typo_in_the_search_space_runs_no_trial(bench, tmp_path, brake):
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump({
        "name": "typo", "method": "cut", "dataset": "toy", "preset": "smoke", "n_trials": 3,
        "search_space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
                         "lambda_NCEE": {"type": "float", "low": 0.5, "high": 2.0}},
        "objective": {"metric": "swd"}, "sampler": {"type": "tpe", "seed": 0}}))
    res = bench("study", "run", path, "--no-tracking")
    assert_refused(res, 2, "lambda_NCEE", str(path))
    assert not brake
    journal = Path("results/studies/typo.journal")
    if journal.exists():
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        assert not optuna.get_all_study_summaries(JournalStorage(JournalFileBackend(str(journal))))


def test_study_table_says_why_it_is_empty(bench, tmp_path, brake):
    path = quad_spec(tmp_path / "quad.yaml", overrides={"epochs": 1, "fail": True}, n_trials=20)
    bench("study", "run", path, "--no-tracking")
    res = bench("study", "table", path)
    assert_refused(res, 1, "3 failed", "_quadratic asked to fail")


def test_study_status_shows_the_first_error(bench, tmp_path, brake):
    path = quad_spec(tmp_path / "quad.yaml", overrides={"epochs": 1, "fail": True}, n_trials=20)
    bench("study", "run", path, "--no-tracking")
    res = bench("study", "status", path)
    assert_clean(res, 0)
    assert "_quadratic asked to fail" in res.out


def test_worker_samplers_get_their_own_seeds(tmp_path):
    from bench.studies.run import make_sampler
    from bench.studies.spec import load_spec

    spec = load_spec(quad_spec(tmp_path / "quad.yaml"))
    seeds = [make_sampler(spec, worker=i)._rng.rng.randint(2**31) for i in range(4)]
    assert len(set(seeds)) == 4
    assert make_sampler(spec, worker=2)._rng.rng.randint(2**31) == seeds[2]  # derived, so reproducible


def test_four_parallel_tpe_workers_propose_eight_distinct_points(tmp_path):
    path = quad_spec(tmp_path / "quad.yaml", n_trials=8,
                     overrides={"epochs": 1, "marker_dir": str(tmp_path / "markers"), "wait_for_workers": 4})
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "MLFLOW_TRACKING_URI": ""}
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "study", "run", str(path), "--workers", "4",
                           "--no-tracking"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not proc.stderr.strip(), proc.stderr[-3000:]  # Optuna's own log and library warnings go to the log
    markers = [json.loads(p.read_text()) for p in (tmp_path / "markers").glob("*.json")]
    assert len({m["pid"] for m in markers}) == 4, "the four workers did not all run trials"
    points = [m["params"]["x"] for m in markers]
    assert len(points) == 8 and len(set(points)) == 8, sorted(points)
