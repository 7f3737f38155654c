"""`bench eval`: two folders -> table + JSON; `--run` re-scores a run folder and logs to its MLflow run."""

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from bench.cli import eval as cli_eval
from bench.cli import main as bench_main


def _folder(root, n=4, seed=0, size=32):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def test_register_adds_the_eval_subcommand():
    parser = argparse.ArgumentParser(prog="bench")
    sub = parser.add_subparsers(dest="command")
    cli_eval.register(sub)
    args = parser.parse_args(["eval", "--real", "a", "--fake", "b", "--metrics", "fid,kid", "--protocol", "clean"])
    assert args.func is cli_eval.cmd_eval and args.metrics == ["fid", "kid"] and args.protocol == "clean"


def test_two_folders_print_a_table_and_write_json(tmp_path, capsys):
    real, fake = _folder(tmp_path / "real"), _folder(tmp_path / "fake", seed=1)
    out = tmp_path / "scores.json"
    code = bench_main(["eval", "--real", str(real), "--fake", str(fake), "--metrics", "swd,psnr,ssim", "--seed", "3",
                          "--context", "direction=AtoB", "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "bench eval" in table and "swd" in table and "psnr" in table
    doc = json.loads(out.read_text())
    assert set(doc["metrics"]) == {"swd", "psnr", "ssim"}
    swd = doc["metrics"]["swd"]
    assert swd["value"] > 0 and swd["fingerprint"]["seed"] == 3 and swd["fingerprint"]["direction"] == "AtoB"
    assert doc["metrics"]["psnr"]["fingerprint"]["matching"] == "file stem"


def test_segmentation_alias_without_weights_reports_unavailable(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BENCH_SEG_WEIGHTS", raising=False)
    fake, labels = _folder(tmp_path / "fake"), _folder(tmp_path / "labels", seed=2)
    assert bench_main(["eval", "--fake", str(fake), "--labels", str(labels), "--metrics", "seg", "--json",
                          str(tmp_path / "o.json")]) == 0
    doc = json.loads((tmp_path / "o.json").read_text())
    assert set(doc["metrics"]) == {"miou", "pixel_acc", "class_acc"}
    assert all(m["value"] is None and "--seg-weights" in m["unavailable"] for m in doc["metrics"].values())
    assert "--seg-weights" in capsys.readouterr().out


def _run_dir(tmp_path):
    run = tmp_path / "runs" / "toy" / "cut" / "seed0"
    _folder(run / "eval" / "reference", seed=0)
    _folder(run / "eval" / "last" / "fake", seed=1)
    (run / "config.json").write_text(json.dumps({"method": "cut", "dataset": "toy", "seed": 0,
                                                 "data": {"direction": "AtoB"},
                                                 "eval": {"metrics": [], "protocol": "legacy_pytorch", "batch_size": 2},
                                                 "tracking_uri": None}))
    (run / "metrics.json").write_text(json.dumps({"last": {"metrics": {"swd": {}, "l1": {}, "lpips_diversity": {}}}}))
    return run


def test_rescoring_a_run_writes_json_and_logs_to_its_mlflow_run(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    run = _run_dir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("toy")
    run_id = client.create_run(exp).info.run_id
    (run / "mlflow_run_id.txt").write_text(run_id)
    assert bench_main(["eval", "--run", str(run), "--tracking-uri", uri]) == 0
    doc = json.loads((run / "metrics_rescored.json").read_text())
    assert set(doc["metrics"]) == {"swd", "l1"}  # what the run reported, minus what needs the model
    fp = doc["metrics"]["swd"]["fingerprint"]
    assert fp["dataset"] == "toy" and fp["direction"] == "AtoB" and fp["seed"] == 0 and "eval/last" in fp["rescored"]
    logged = client.get_run(run_id).data.metrics
    assert logged["rescored/last/swd_x1e3"] == pytest.approx(doc["metrics"]["swd"]["value"])  # unit in the key
    assert "rescored/last/l1" in logged


def test_rescoring_without_tracking_and_bad_run_folders(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = _run_dir(tmp_path)
    assert bench_main(["eval", "--run", str(run), "--metrics", "swd"]) == 0
    assert set(json.loads((run / "metrics_rescored.json").read_text())["metrics"]) == {"swd"}
    assert bench_main(["eval", "--run", str(run), "--tag", "best"]) == 1
    assert "eval/best/fake is missing" in capsys.readouterr().err
    assert bench_main(["eval", "--run", str(tmp_path)]) == 1
    assert "no config.json" in capsys.readouterr().err
    assert bench_main(["eval", "--run", str(run), "--real", str(run)]) == 2
    assert bench_main(["eval"]) == 2
