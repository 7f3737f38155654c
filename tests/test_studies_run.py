"""Running studies: journal storage, MLflow nesting, pruning, stale trials, kill + resume, submitit, tables.

Most tests use the `_quadratic` objective of tests/study_objectives.py (no training) so the machinery is tested
in seconds; the real QS-Attn smoke study is marked slow.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench.studies.spec import load_spec
from bench.studies.run import RunOptions, open_handle, open_study, work

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def write_spec(path: Path, **extra) -> Path:
    raw = {"name": "quad", "method": "_quadratic", "dataset": "toy", "preset": "smoke",
           "overrides": {"epochs": 3, "marker_dir": str(path.parent / "markers")},
           "search_space": {"x": {"type": "categorical", "choices": [0, 1, 2, 3]},
                            "mode": {"type": "variant", "variants": {"A": {"y": 1}, "B": {"y": 2}}}},
           "objective": {"metric": "fid"}, "seeds": [0, 1], "sampler": "grid", "pruner": "none"}
    raw.update(extra)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory) -> str:
    """One MLflow database for the module: creating its schema costs seconds, once is enough."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def markers(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "markers").glob("*.json"))]


def executions(root: Path) -> dict:
    counts: dict = {}
    for m in markers(root):
        key = (json.dumps(m["params"], sort_keys=True), m["seed"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_grid_study_runs_every_point_once_and_logs_nested_mlflow_runs(tmp_path, mlflow_uri):
    from mlflow import MlflowClient

    spec = load_spec(write_spec(tmp_path / "quad.yaml"))
    opts = RunOptions(tracking_uri=mlflow_uri, results_dir=str(tmp_path / "results"))
    handle = open_handle(spec)
    assert handle.kind == "journal" and handle.url == "results/studies/quad.journal"
    study = open_study(spec, handle, opts, coordinator=True)
    counts = work(spec, opts, handle, study)
    assert counts == {"complete": 8, "pruned": 0, "fail": 0}
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted((t.params["x"], t.params["mode"]) for t in trials) == [
        (x, m) for x in (0, 1, 2, 3) for m in ("A", "B")]
    assert set(executions(tmp_path).values()) == {1} and len(executions(tmp_path)) == 16
    # Objective = mean over seeds of (x-1)^2 + (y-1)^2 + 0.01*seed.
    assert study.best_params == {"x": 1, "mode": "A"}
    assert study.best_value == pytest.approx(0.005)
    assert study.best_value == min(t.value for t in trials)

    from bench.studies.run import finalize

    out = finalize(study, spec, opts)
    table = (out / "table.md").read_text()
    # The `bench table` renderer: label columns per parameter, catalogue precision, significance bold.
    assert "| x | mode | toy FID↓ | toy KID×100↓ |" in table
    assert "| 1 | A | **0.0 ± 0.0** (n=2) | **0.00 ± 0.00** (n=2) |" in table and table.count("**") == 2 + 4  # title, two bold cells
    assert (out / "fid_vs_param.png").stat().st_size > 1000 and (out / "history.png").is_file()
    assert (out / "table.tex").read_text().count(r"\pm") == 16 + 1  # the cells and the caption

    client = MlflowClient(opts.tracking_uri)
    exp = client.get_experiment_by_name("toy")
    runs = client.search_runs([exp.experiment_id])
    parent = client.get_run(study.user_attrs["bench:mlflow_parent_run_id"])
    assert parent.data.tags["bench.kind"] == "study" and parent.data.tags["bench.study"] == "quad.toy.smoke"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(int(r.data.tags["bench.trial"]) for r in children) == list(range(8))
    child = next(r for r in children if r.data.tags["bench.trial"] == str(study.best_trial.number))
    assert child.data.params["param.x"] == "1" and child.data.params["param.mode"] == "A"
    assert child.data.metrics["objective/fid"] == pytest.approx(study.best_value)
    assert child.info.status == "FINISHED" and child.data.tags["bench.status"] == "finished"
    assert json.loads(child.data.tags["bench.swept"]) == {"mode": "A", "x": 1}
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["best.x"] == "1"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "study")}
    assert {"study/table.md", "study/table.csv", "study/fid_vs_param.png", "study/history.png"} <= artifacts


def test_pruned_trials_are_visible_in_optuna_mlflow_and_table(tmp_path, mlflow_uri):
    from mlflow import MlflowClient

    from bench.studies.report import study_table

    spec = load_spec(write_spec(tmp_path / "quad.yaml", seeds=[0],
                                pruner={"type": "median", "n_startup_trials": 2}))
    opts = RunOptions(tracking_uri=mlflow_uri)
    handle = open_handle(spec)
    study = open_study(spec, handle, opts, coordinator=True)
    counts = work(spec, opts, handle, study)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert counts["pruned"] == len(pruned) > 0 and counts["complete"] + counts["pruned"] == 8
    for t in pruned:
        assert t.intermediate_values, "the eval-time metric was reported before pruning"
    client = MlflowClient(opts.tracking_uri)
    for t in pruned:
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert run.info.status == "KILLED" and run.data.tags["bench.status"] == "pruned"
        assert "intermediate/fid" in run.data.metrics
    from bench.studies.report import STATE_NOTES
    from bench.tables import render

    table = study_table(study, spec)
    cells = table.cells[table.cells["metric"] == "fid"]
    assert (cells["n_pruned"] == 1).sum() == len(pruned)
    mark = table.footnotes.index(STATE_NOTES["pruned"]) + 1
    assert all(c["marks"] == [mark] and c["n"] == 0 for _, c in cells[cells["n_pruned"] == 1].iterrows())
    assert render(table, "md").count(f"<sup>{mark}</sup>") >= len(pruned)


def test_tpe_budget_enqueued_defaults_first_and_resume_keeps_trials(tmp_path):
    path = write_spec(tmp_path / "quad.yaml", seeds=[0], sampler={"type": "tpe", "seed": 1}, n_trials=5,
                      search_space={"x": {"type": "float", "low": -2.0, "high": 4.0},
                                    "z": {"type": "int", "low": 0, "high": 3}},
                      enqueue=[{"x": 1.0, "z": 1}])
    spec = load_spec(path)
    opts = RunOptions(tracking=False)
    study = open_study(spec, open_handle(spec), opts, coordinator=True)
    work(spec, opts, max_trials=3)
    assert len(study.trials) == 3 and study.trials[0].params == {"x": 1.0, "z": 1}
    assert study.best_value == pytest.approx(0.0)
    more = spec.with_options(n_trials=5)
    work(more, opts)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 5
    assert work(more, opts) == {"complete": 0, "pruned": 0, "fail": 0}, "budget reached: nothing more runs"


def test_spec_change_on_existing_study_is_refused(tmp_path):
    from bench.errors import ConfigError

    spec = load_spec(write_spec(tmp_path / "quad.yaml"))
    opts = RunOptions(tracking=False)
    open_study(spec, open_handle(spec), opts)
    changed = spec.with_options(overrides={"epochs": 5})
    with pytest.raises(ConfigError, match="was created with other settings .*differs in: cli_overrides"):
        open_study(changed, open_handle(changed), opts)


def test_dead_worker_trial_is_failed_and_requeued_with_its_params(tmp_path):
    from bench.studies.run import _next_trial
    from bench.studies.storage import OWNER_ATTR, owner_record

    spec = load_spec(write_spec(tmp_path / "quad.yaml", grace_period=1, heartbeat_interval=1))
    opts = RunOptions(tracking=False)
    handle = open_handle(spec)
    study = open_study(spec, handle, opts)
    # Trial 0: its worker process is gone (a pid that has exited).
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    t0 = _next_trial(study, spec)
    record = {**owner_record(t0.number), "pid": dead.pid}
    t0.set_user_attr(OWNER_ATTR, record)
    # Trial 1: owned by this live process but its last heartbeat is older than the grace period.
    t1 = _next_trial(study, spec)
    t1.set_user_attr(OWNER_ATTR, owner_record(t1.number))
    handle.beat(t1._trial_id)
    old = time.time() - 5
    os.utime(handle.heartbeat_dir / str(t1._trial_id), (old, old))
    # Trial 2: alive and beating.
    t2 = _next_trial(study, spec)
    t2.set_user_attr(OWNER_ATTR, owner_record(t2.number))
    handle.beat(t2._trial_id)

    failed = handle.fail_stale(study)
    assert sorted(failed) == [0, 1]
    states = {t.number: t.state for t in study.trials}
    assert states[0] == states[1] == TrialState.FAIL and states[2] == TrialState.RUNNING
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") in (0, 1)]
    assert len(retries) == 2 and all(t.state == TrialState.WAITING for t in retries)
    assert {json.dumps(t.system_attrs["fixed_params"], sort_keys=True) for t in retries} == {
        json.dumps(study.trials[n].system_attrs["fixed_params"], sort_keys=True) for n in (0, 1)}
    assert handle.fail_stale(study) == [], "a trial is failed and retried once"
    # Retries are popped before the rest of the queue: they continue from their checkpoints.
    assert [_next_trial(study, spec).number for _ in range(3)] == sorted(t.number for t in retries) + [3]


def test_cli_table_status_and_errors(tmp_path, capsys):
    from bench.cli import main as bench_main

    def main(argv):
        return bench_main(["study", *argv])

    path = str(write_spec(tmp_path / "quad.yaml", seeds=[0]))
    assert main(["table", path]) == 2
    assert "does not exist; run `bench study run SPEC` first" in capsys.readouterr().err
    assert main(["run", path, "--no-tracking", "--n-trials", "3"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["trials"]["complete"] == 3
    assert main(["status", path]) == 0
    out = capsys.readouterr().out
    assert "budget 8  complete 3  pruned 0  running 0  waiting 5" in out
    assert "optuna-dashboard results/studies/quad.journal" in out
    assert main(["table", path, "--format", "csv"]) == 0
    import io

    import pandas as pd

    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))  # long form, as `bench table --format csv`
    assert frame["row"].nunique() == 8, "every grid cell has a row"
    done = frame[(frame["row"] == "x=1; mode=A") & (frame["metric"] == "fid")].iloc[0]
    assert done["mean"] == pytest.approx(0.0) and done["n"] == 1
    waiting = frame[frame["row"] == "x=3; mode=B"].iloc[0]
    assert math.isnan(waiting["mean"]) and waiting["footnotes"] == "trial queued: no score yet"
    assert main(["table", path, "--preset", "paper"]) == 2
    err = capsys.readouterr().err
    assert "no study 'quad.toy.paper'" in err and "quad.toy.smoke" in err
    assert main(["run", path, "--workers", "0"]) == 2


@pytest.mark.slow
def test_two_workers_survive_sigkill_and_resume(tmp_path):
    """`bench study run --workers 2`, SIGKILL mid-study, same command again: finished trials kept, the
    killed ones failed and retried, every grid point complete once."""
    path = write_spec(tmp_path / "quad.yaml",
                      overrides={"epochs": 3, "sleep": 0.5, "marker_dir": str(tmp_path / "markers")})
    args = [sys.executable, "-m", "bench.cli", "study", "run", str(path), "--workers", "2", "--no-tracking"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spec = load_spec(path)
    deadline = time.monotonic() + 240
    study = None
    while time.monotonic() < deadline:
        try:
            study = optuna.load_study(study_name=spec.study_name, storage=open_handle(spec, create=False).storage)
            states = [t.state for t in study.trials]
            if states.count(TrialState.COMPLETE) >= 2 and states.count(TrialState.RUNNING) >= 1:
                break
        except Exception:
            pass
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("the study did not get going within 240 s")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)  # the workers die with their parent (PR_SET_PDEATHSIG)
    done_before = {t.number for t in study.trials if t.state == TrialState.COMPLETE}
    assert any(t.state == TrialState.RUNNING for t in study.trials)

    r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    trials = study.trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert done_before <= {t.number for t in complete}, "finished trials are kept"
    assert sorted((t.params["x"], t.params["mode"]) for t in complete) == [
        (x, m) for x in (0, 1, 2, 3) for m in ("A", "B")], "every grid point exactly once"
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(any(c.system_attrs.get("failed_trial") == f.number for c in complete) for f in failed)
    # Only the killed trials ran a seed twice.
    twice = {k for k, n in executions(tmp_path).items() if n > 1}
    killed = {json.dumps({"y": {"A": 1, "B": 2}[f.params["mode"]], "x": f.params["x"]}, sort_keys=True)
              for f in failed}
    assert {k[0] for k in twice} <= killed


def test_submitit_local_executor_runs_workers(tmp_path):
    pytest.importorskip("submitit", reason="submitit is the optional [slurm] extra")
    from bench.studies.run import submit

    spec = load_spec(write_spec(tmp_path / "quad.yaml", seeds=[0]))
    opts = RunOptions(tracking=False)
    jobs = submit(spec, opts, n_workers=2, folder=str(tmp_path / "submitit"), cluster="local",
                  parameters={"timeout_min": 10}, wait=True)
    assert len(jobs) == 2
    counts = [j.result() for j in jobs]
    assert sum(c["complete"] for c in counts) == 8
    study = optuna.load_study(study_name=spec.study_name, storage=open_handle(spec).storage)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 8 and len(study.trials) == 8


@pytest.mark.slow
def test_qsattn_queries_smoke_study_on_toy(tmp_path, inception_weights):
    """The real thing: the Table 5 spec on toy/smoke, two trials, FID through the runner, table and plot."""
    r = subprocess.run(
        [sys.executable, "-m", "bench.cli", "study", "run", str(REPO / "studies" / "qsattn_queries.yaml"),
         "--dataset", "toy", "--preset", "smoke", "--n-trials", "2", "--device", "cpu",
         "--inception-weights", str(inception_weights), "--set", "eval.n_test=8", "--set", "train.eval_n=8"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1800, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "results" / "studies" / "qsattn_queries.toy.smoke"
    table = (out / "table.md").read_text()
    # The one table renderer: the paper's row order (per query count, the QS-Attn modes then CUT), method labels,
    # the two trials scored, the other 14 grid cells queued and footnoted as such.
    assert "| num_patches | Method | toy FID↓ |" in table
    assert re.search(r"\| 64 \| QS-Attn \(Global\) \| \d+\.\d \(n=1\) \|", table), table
    assert re.search(r"\| 64 \| QS-Attn \(Local\) \| \d+\.\d \(n=1\) \|", table), table
    assert table.count("| 512 | ") == 4 and "trial queued: no score yet" in table
    assert (out / "fid_vs_param.png").is_file()
    runs = sorted((tmp_path / "runs" / "toy").glob("*/seed0-qsattn_queries.smoke.trial*"))
    assert [r.parent.name for r in runs] == ["qsattn_global", "qsattn_local"]
    assert all((r / "metrics.json").is_file() for r in runs)


def test_status_and_table_of_a_study_do_not_import_torch(tmp_path):
    """bench/cli/study.py kept its own parse_set because bench.config imported every method (and torch); the
    read-only study commands now run on Optuna and pandas alone."""
    path = write_spec(tmp_path / "light.yaml", name="light", seeds=[0],
                      search_space={"x": {"type": "categorical", "choices": [0, 1]}})
    spec = load_spec(path)
    opts = RunOptions(tracking=False, results_dir=str(tmp_path / "results"))
    handle = open_handle(spec)
    assert work(spec, opts, handle, open_study(spec, handle, opts, coordinator=True))["complete"] == 2
    code = ("import sys; from bench.cli import main; "
            f"codes = [main(['study', c, {str(path)!r}, '--no-tracking']) for c in ('status', 'table')]; "
            "print(codes, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[0, 0] False"
