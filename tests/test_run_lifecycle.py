"""A run folder's life from the command line: failed starts, reruns, kept runs, --restart, --resume, --preset.

Every case goes through `bench run` (bench.cli.main) on tiny settings, as a user would type it.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from PIL import Image

from bench.cli import main

FAST = {"data.max_train": "4", "train.eval_n": "2", "eval.n_test": "2", "eval.metrics": "swd",
        "train.select_metric": "swd", "train.log_every": "2", "train.max_iters": "2"}


def _sets(extra: dict | None = None) -> list[str]:
    out = []
    for k, v in {**FAST, **(extra or {})}.items():
        out += ["--set", f"{k}={v}"]
    return out


def _run(*args: str, sets: dict | None = None) -> list[str]:
    return ["run", "--preset", "smoke", "--no-progress", *args, *_sets(sets)]


def _said(capsys) -> str:
    """Everything printed (logging goes through rich, which wraps lines), as one line of single spaces."""
    out = capsys.readouterr()
    return " ".join((out.out + " " + out.err).split())


def _client(tmp_path: Path):
    return mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def _mini_unpaired(root: Path, n: int = 2) -> Path:
    """A horse2zebra-layout folder of a few 40x40 images (trainA/trainB/testA/testB)."""
    for i, sub in enumerate(("trainA", "trainB", "testA", "testB")):
        (root / sub).mkdir(parents=True)
        for j in range(n):
            Image.new("RGB", (40, 40), (40 * i + 10 * j, 90, 200 - 30 * i)).save(root / sub / f"{sub}_{j}.png")
    return root


def test_failed_start_leaves_nothing_and_the_named_fix_recovers(tmp_path, capsys):
    """Without data: one line naming --data-root, no run folder, no MLflow database. With it: exit 0."""
    cmd = _run("--methods", "cut", "--dataset", "horse2zebra")
    assert main(cmd) == 1
    err = capsys.readouterr().err
    assert "--data-root" in err and "bench data get horse2zebra" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()
    data = _mini_unpaired(tmp_path / "h2z")
    assert main(cmd + ["--data-root", str(data)]) == 0
    assert (tmp_path / "runs/horse2zebra/cut/seed0/metrics.json").is_file()
    runs = _client(tmp_path).search_runs([e.experiment_id for e in _client(tmp_path).search_experiments()])
    assert [r.info.status for r in runs] == ["FINISHED"]  # no FAILED run left from the first attempt


def test_a_run_that_failed_before_its_first_checkpoint_simply_starts_again(tmp_path, monkeypatch, capsys):
    from methods.cut import CUT

    real_step = CUT.train_step

    def boom(self, batch):
        raise RuntimeError("crashed in the first iteration")

    monkeypatch.setattr(CUT, "train_step", boom)
    cmd = _run("--methods", "cut", "--dataset", "toy")
    assert main(cmd) == 1
    run_dir = tmp_path / "runs/toy/cut/seed0"
    assert (run_dir / "config.json").is_file() and not (run_dir / "checkpoints/last.pt").exists()
    first_id = (run_dir / "mlflow_run_id.txt").read_text().strip()
    monkeypatch.setattr(CUT, "train_step", real_step)
    capsys.readouterr()
    assert main(cmd) == 0  # the same command, nothing else
    assert "stopped before its first checkpoint" in _said(capsys)
    assert (run_dir / "mlflow_run_id.txt").read_text().strip() == first_id  # the same MLflow run, now finished
    run = _client(tmp_path).get_run(first_id)
    assert run.info.status == "FINISHED" and run.data.tags["bench.status"] == "finished"
    assert not (run_dir / "error.txt").exists()


def test_a_failed_start_rerun_with_other_settings_starts_a_new_mlflow_run_and_marks_the_old_one(tmp_path,
                                                                                              monkeypatch):
    from methods.cut import CUT

    real_step = CUT.train_step
    monkeypatch.setattr(CUT, "train_step", lambda self, batch: (_ for _ in ()).throw(RuntimeError("boom")))
    assert main(_run("--methods", "cut", "--dataset", "toy")) == 1
    run_dir = tmp_path / "runs/toy/cut/seed0"
    old_id = (run_dir / "mlflow_run_id.txt").read_text().strip()
    monkeypatch.setattr(CUT, "train_step", real_step)
    assert main(_run("--methods", "cut", "--dataset", "toy", sets={"lambda_NCE": "2"})) == 0  # no --restart needed
    new_id = (run_dir / "mlflow_run_id.txt").read_text().strip()
    old = _client(tmp_path).get_run(old_id)
    assert new_id != old_id and old.info.status == "FAILED"
    assert old.data.tags["bench.status"] == "replaced" and old.data.tags["bench.replaced_by"] == new_id


def test_a_finished_run_is_kept_and_the_readme_seeds_sequence_exits_0(tmp_path, capsys):
    assert main(_run("--methods", "cut", "--dataset", "toy")) == 0
    metrics = tmp_path / "runs/toy/cut/seed0/metrics.json"
    stamp = metrics.stat().st_mtime_ns
    capsys.readouterr()
    assert main(_run("--methods", "cut", "--dataset", "toy", "--seeds", "0", "1")) == 0
    assert "finished (kept)" in _said(capsys)
    assert metrics.stat().st_mtime_ns == stamp  # not retrained, not re-evaluated
    assert (tmp_path / "runs/toy/cut/seed1/metrics.json").is_file()


def test_other_settings_are_refused_with_the_restart_command_which_moves_the_old_run_aside(tmp_path, capsys):
    assert main(_run("--methods", "cut", "--dataset", "toy")) == 0
    run_dir = tmp_path / "runs/toy/cut/seed0"
    old_id = (run_dir / "mlflow_run_id.txt").read_text().strip()
    capsys.readouterr()
    changed = _run("--methods", "cut", "--dataset", "toy", sets={"lambda_NCE": "2"})
    assert main(changed) == 2  # a usage error: the flags do not fit the folder
    err = " ".join(capsys.readouterr().err.split())
    assert "method_cfg.lambda_NCE: 1.0 -> 2.0" in err
    expected = "bench " + " ".join(changed + ["--restart"])
    assert expected in err  # the exact command that starts over
    assert json.loads((run_dir / "config.json").read_text())["method_cfg"]["lambda_NCE"] == 1.0  # untouched
    assert main(changed + ["--restart"]) == 0
    moved = [p for p in run_dir.parent.iterdir() if p.name.startswith("seed0.replaced-")]
    assert len(moved) == 1 and (moved[0] / "metrics.json").is_file()  # the old run is kept, aside
    assert json.loads((run_dir / "config.json").read_text())["method_cfg"]["lambda_NCE"] == 2.0
    old = _client(tmp_path).get_run(old_id)
    new_id = (run_dir / "mlflow_run_id.txt").read_text().strip()
    assert new_id != old_id
    assert old.data.tags["bench.status"] == "replaced" and old.data.tags["bench.replaced_by"] == new_id
    assert old.data.tags["bench.run_dir"] == str(moved[0].resolve())


def test_resume_without_last_pt_says_so(tmp_path, capsys):
    assert main(_run("--methods", "cut", "--dataset", "toy", "--resume")) == 0
    said = _said(capsys)
    assert "--resume:" in said and "no checkpoints/last.pt" in said and "from the beginning" in said


def test_a_started_run_names_resume_and_restart(tmp_path, capsys):
    assert main(_run("--methods", "cut", "--dataset", "toy")) == 0
    run_dir = tmp_path / "runs/toy/cut/seed0"
    (run_dir / "metrics.json").unlink()  # as if killed after a checkpoint, before the final scores
    capsys.readouterr()
    cmd = _run("--methods", "cut", "--dataset", "toy")
    assert main(cmd) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "bench " + " ".join(cmd + ["--resume"]) in err and "bench " + " ".join(cmd + ["--restart"]) in err
    assert main(cmd + ["--resume"]) == 0


def test_no_preset_on_a_cpu_only_machine_prints_the_cost_and_the_cpu_sized_command(tmp_path, capsys, monkeypatch):
    import bench.cli.run as run_cli

    monkeypatch.setattr(run_cli, "has_accelerator", lambda: False)
    assert main(["run", "--methods", "cut", "--dataset", "toy"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "12,800 iterations at 256 px" in err  # CUT's paper schedule: 400 epochs x 32 toy images
    assert "bench run --methods cut --dataset toy --preset smoke" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


def test_no_preset_with_a_gpu_means_paper(monkeypatch):
    import argparse

    import bench.cli.run as run_cli
    from bench.runner import build_run_config

    monkeypatch.setattr(run_cli, "has_accelerator", lambda: True)
    cfg = build_run_config("cut", "toy", 0, "paper")
    run_cli.check_preset_for_cpu(argparse.Namespace(preset=None, argv=[]), [cfg], {"cut": 32})  # no refusal


def test_option_abbreviations_are_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--method", "cut", "--dataset", "toy", "--preset", "smoke"])
    assert exc.value.code == 2
    assert "--methods" in capsys.readouterr().err  # "the following arguments are required: --methods"
    with pytest.raises(SystemExit):
        main(["table", "--form", "csv"])


def test_the_summary_shows_every_computed_metric_with_units_and_each_reason_once(capsys):
    from bench.cli.run import _print_summary
    from bench.runner import RunResult

    reason = "no FID Inception weights found; pass --inception-weights FILE"
    results = [RunResult(m, "facades", s, "finished", Path(f"/r/{m}/seed{s}"),
                         metrics={"last": {"fid": None, "kid": None, "swd": 318.24, "l1": 0.4321, "psnr": 11.234,
                                           "ssim": 0.5213, "epoch": 2}, "best": {"fid": None, "epoch": 2}},
                         unavailable={"fid": reason, "kid": reason}) for m in ("pix2pix", "bicyclegan") for s in (0, 1)]
    results[0].kept = True
    _print_summary(results, [])
    out = capsys.readouterr().out
    for header in ("FID", "KID×100", "SWD ×1e3", "L1", "PSNR dB", "SSIM"):
        assert header in out
    assert "318.2" in out and "0.432" in out and "11.23" in out and "0.521" in out  # the catalogue's decimals
    assert "finished (kept)" in out
    assert out.count(reason) == 1 and f"FID, KID×100 n/a: {reason} (all runs)" in out


def test_a_failed_weights_download_is_tried_once_per_process(tmp_path, monkeypatch):
    from bench.errors import DownloadError, MetricUnavailable
    from bench.metrics import features

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("BENCH_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(features, "_FAILED_DOWNLOADS", {})
    calls = []

    def offline(dst, url=None, sha256_prefix=None):
        calls.append(dst)
        raise DownloadError("cannot download the FID Inception weights (offline)")

    monkeypatch.setattr(features, "download_inception_weights", offline)
    messages = []
    for _ in range(3):
        with pytest.raises(MetricUnavailable) as exc:
            features.resolve_inception_weights(None)
        messages.append(str(exc.value))
    assert len(calls) == 1 and len(set(messages)) == 1 and "offline" in messages[0]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_results_and_checkpoints_follow_the_umask(tmp_path, umask, mode):
    import os
    import stat

    from bench.checkpoint import atomic_write_json, save_checkpoint

    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "metrics.json", {"fid": 1.0})
        save_checkpoint(tmp_path / "last.pt", {"x": 1})
    finally:
        os.umask(old)
    for name in ("metrics.json", "last.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_import_writes_per_dataset_never_overwrites_and_is_tracked_for_tables(tmp_path, capsys):
    import torch

    import methods
    from bench.tables import TableOptions, build_table, render

    src = methods.build("cut", preset="smoke")
    path = tmp_path / "latest_net_G.pth"
    torch.save(src.nets["netG"].state_dict(), path)
    cmd = ["import", "cut", str(path), "--preset", "smoke", "--dataset", "toy", "--set", "eval.metrics=swd",
           "--set", "train.select_metric=swd", "--set", "eval.n_test=2"]
    assert main(cmd) == 0
    assert main(cmd) == 0  # a second import of the same file: a new folder, the first one untouched
    folders = sorted(p.name for p in (tmp_path / "runs/imported/toy/cut").iterdir())
    assert folders == ["latest_net_G", "latest_net_G-2"]
    runs = _client(tmp_path).search_runs([_client(tmp_path).get_experiment_by_name("toy").experiment_id])
    assert len(runs) == 2 and {r.data.tags["bench.kind"] for r in runs} == {"import"}
    assert all(r.info.status == "FINISHED" and "best/swd_x1e3" in r.data.metrics for r in runs)  # unit in the key
    table = render(build_table(TableOptions(metrics=("swd",)), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert "CUT (official checkpoint)" in table


def test_a_long_run_says_after_a_few_iterations_how_long_it_will_take(caplog):
    from types import SimpleNamespace

    import torch

    from bench.train import Trainer, format_duration

    stub = SimpleNamespace(cfg=SimpleNamespace(method="cut", dataset="toy", seed=0, preset="paper"),
                           total_iterations=12_800, state=SimpleNamespace(iteration=3),
                           method=SimpleNamespace(device=torch.device("cpu")))
    with caplog.at_level("WARNING", logger="bench.train"):
        Trainer._log_eta(stub, seconds=30.0, done=3)
    message = caplog.records[-1].getMessage()
    assert "10.00 s/iteration measured; 12797 iterations left, about 35.5 h" in message
    assert "--preset smoke" in message
    caplog.clear()
    stub.total_iterations = 10
    with caplog.at_level("WARNING", logger="bench.train"):
        Trainer._log_eta(stub, seconds=3.0, done=3)  # a short run says nothing
    assert not caplog.records
    assert [format_duration(x) for x in (45, 720, 3.4 * 3600, 3 * 86400)] == ["45 s", "12 min", "3.4 h", "3.0 days"]
