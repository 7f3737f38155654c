"""`bench eval --run` and `bench table`/`bench plot` as a user meets them: from another folder, after an offline
run, with the best epoch being the last, with mixed image sizes."""

from __future__ import annotations

import os

import mlflow
import numpy as np
from PIL import Image

from bench.cli import main

FAST = ["--set", "data.max_train=4", "--set", "train.eval_n=2", "--set", "eval.n_test=2",
        "--set", "eval.metrics=fid,swd", "--set", "train.select_metric=swd", "--set", "train.max_iters=2"]


def _said(capsys) -> str:
    out = capsys.readouterr()
    return " ".join((out.out + " " + out.err).split())


def test_table_and_plot_from_another_folder_say_where_they_looked_and_create_nothing(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    assert main(["table", "--metric", "fid"]) == 1
    said = _said(capsys)
    assert f"no tracking store at {elsewhere / 'mlflow.db'}" in said and "--tracking-uri" in said
    assert main(["plot", "--dataset", "toy"]) == 1
    assert f"no tracking store at {elsewhere / 'mlflow.db'}" in _said(capsys)
    assert main(["table", "--metric", "fid", "--published"]) == 0  # the papers' numbers, with the warning
    assert "published numbers only" in _said(capsys)
    assert list(elsewhere.iterdir()) == []  # no empty mlflow.db


def test_eval_run_logs_to_the_runs_own_store_and_fills_what_the_offline_run_could_not(
        tmp_path, offline, inception_weights, monkeypatch, capsys):
    project = tmp_path / "project"
    project.mkdir()
    os.chdir(project)
    assert main(["run", "--methods", "cut", "--dataset", "toy", "--preset", "smoke", "--no-progress", *FAST]) == 0
    run_dir = project / "runs/toy/cut/seed0"
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    run_id = (run_dir / "mlflow_run_id.txt").read_text().strip()
    assert "last/fid" not in client.get_run(run_id).data.metrics  # FID was n/a offline
    # Later, from another folder, with the weights: re-score the best checkpoint (its epoch is the last one).
    other = tmp_path / "other"
    other.mkdir()
    os.chdir(other)
    capsys.readouterr()
    assert main(["eval", "--run", str(run_dir), "--tag", "best", "--metrics", "fid",
                 "--inception-weights", str(inception_weights)]) == 0
    assert not (other / "mlflow.db").exists()  # logged to the run's own store, not a new one here
    data = client.get_run(run_id).data
    assert data.metrics["rescored/best/fid"] == data.metrics["best/fid"] == data.metrics["last/fid"]
    assert "bench.unavailable.fid" not in data.tags and "bench.protocol.fid.n_fake" in data.tags  # flat tags
    os.chdir(project)
    capsys.readouterr()
    assert main(["table", "--metric", "fid", "--format", "csv"]) == 0
    assert f"{data.metrics['best/fid']:.1f}"[:4] in capsys.readouterr().out


def test_eval_prints_the_metrics_computed_before_a_mixed_size_failure(tmp_path, inception_weights, capsys):
    rng = np.random.default_rng(0)
    for sub in ("real", "fake"):
        (tmp_path / sub).mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "real" / f"{i}.png")
        size = 32 if i < 2 else 48
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(tmp_path / "fake" / f"{i}.png")
    code = main(["eval", "--real", "real", "--fake", "fake", "--metrics", "fid,kid,swd", "--allow-mixed-sizes",
                 "--inception-weights", str(inception_weights)])
    said = _said(capsys)
    assert code == 1 and "SWD needs one image size" in said
    assert "computed fid, kid before the error below" in said
    assert "│ fid" in said and "│ kid" in said  # the table of what was computed
