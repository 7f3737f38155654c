"""Attacks on a run folder: tampered last.pt / best.pt / config.json / metrics.json, and recovery after a
failed final evaluation (re-scored by --resume without retraining, also with corrected eval settings)."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from attack_kit import assert_clean, assert_refused, assert_intact, snapshot, tiny_run_argv


class _Hostile:
    """A pickle that would create a marker file when unpickled without weights_only."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _torch_bytes(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


TAMPER = {
    "zero-byte": lambda data, tmp: b"",
    "truncated": lambda data, tmp: data[: len(data) // 2],
    "one-byte-short": lambda data, tmp: data[:-1],
    "garbage": lambda data, tmp: bytes(range(256)) * 64,
    "text": lambda data, tmp: b"this is not a checkpoint\n",
    "not-a-dict": lambda data, tmp: _torch_bytes([1, 2, 3]),
    "other-format": lambda data, tmp: _torch_bytes({"format_version": 99}),
    "missing-parts": lambda data, tmp: _torch_bytes({"format_version": 1, "method": {}}),
    "hostile-pickle": lambda data, tmp: pickle.dumps(_Hostile(str(tmp / "owned.txt"))),
}


@pytest.mark.parametrize("how", list(TAMPER))
def test_tampered_last_pt_of_an_unfinished_run_is_one_line(bench, run_copy, tmp_path, how):
    run = run_copy("interrupted")
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(TAMPER[how](last.read_bytes(), tmp_path))
    before = snapshot(tmp_path / "runs")
    res = bench(*tiny_run_argv("--resume"))
    assert_refused(res, 1, str(last), "restore")
    assert_intact(before, tmp_path / "runs")
    assert not (tmp_path / "owned.txt").exists()


def test_a_checkpoint_of_another_method_is_not_resumed(bench, run_copy, tmp_path):
    """FastCUT's nets have CUT's shapes: its last.pt in a CUT folder loaded, trained on and was reported as CUT."""
    import shutil

    run = run_copy("interrupted")
    assert_clean(bench(*tiny_run_argv(method="fastcut", out="other")), 0)
    last = run / "checkpoints" / "last.pt"
    shutil.copy2(tmp_path / "other" / "toy" / "fastcut" / "seed0" / "checkpoints" / "last.pt", last)
    before = snapshot(tmp_path / "runs")
    res = bench(*tiny_run_argv("--resume"))
    assert_refused(res, 1, str(last), "fastcut")
    assert_intact(before, tmp_path / "runs")
    assert not (run / "metrics.json").exists()


def test_tampered_last_pt_of_a_finished_run_keeps_the_results(bench, run_copy, tmp_path):
    run = run_copy("finished")
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    before = snapshot(tmp_path / "runs")
    res = bench(*tiny_run_argv("--resume"))
    assert_clean(res, 0)
    assert_intact(before, tmp_path / "runs")


@pytest.mark.parametrize("name,content", [
    ("config.json", b""), ("config.json", b"{not json"), ("config.json", b"\x00\xff\xfe binary"),
    ("metrics.json", b""), ("metrics.json", b"[1, 2"),
])
def test_corrupt_run_records_are_named(bench, run_copy, tmp_path, name, content):
    run = run_copy("finished")
    (run / name).write_bytes(content)
    before = snapshot(tmp_path / "runs")
    res = bench(*tiny_run_argv("--resume"))
    assert_refused(res, 1, str(run / name))
    assert_intact(before, tmp_path / "runs")


# ------------------------------------------------------------------------------------------ evaluation failed
def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


def test_failed_evaluation_is_rescored_by_resume_without_retraining(bench, run_copy):
    run = run_copy("eval_failed")
    assert not (run / "metrics.json").exists()
    last = (run / "checkpoints" / "last.pt").read_bytes()
    history = (run / "history.json").read_text()
    res = bench(*tiny_run_argv("--resume"))
    assert_clean(res, 0)
    doc = _metrics(run)
    assert doc["last"]["metrics"]["swd"]["value"] is not None
    assert (run / "checkpoints" / "last.pt").read_bytes() == last  # not retrained
    assert (run / "history.json").read_text() == history
    assert not (run / "error.txt").exists()


def test_failed_evaluation_is_rescored_with_corrected_eval_settings(bench, run_copy):
    run = run_copy("eval_failed")
    last = (run / "checkpoints" / "last.pt").read_bytes()
    res = bench(*tiny_run_argv("--resume", settings={"eval.n_test": "3"}))
    assert_clean(res, 0)
    assert (run / "checkpoints" / "last.pt").read_bytes() == last
    assert len(list((run / "eval" / "last" / "fake").glob("*.png"))) == 3
    assert json.loads((run / "config.json").read_text())["eval"]["n_test"] == 3
    assert "eval.n_test" in res.out  # the change is logged


def test_failed_evaluation_still_refuses_other_setting_changes(bench, run_copy, tmp_path):
    run = run_copy("eval_failed")
    before = snapshot(tmp_path / "runs")
    res = bench(*tiny_run_argv("--resume", settings={"n_epochs": "2"}))
    assert_refused(res, 2, str(run), "method_cfg.n_epochs", "--restart")
    assert_intact(before, tmp_path / "runs")


def test_an_in_training_evaluation_failure_resumes_with_a_corrected_batch_size(bench, run_copy):
    run = run_copy("quick_eval_failed")
    assert (run / "checkpoints" / "last.pt").is_file() and not (run / "metrics.json").exists()
    res = bench(*tiny_run_argv("--resume", settings={"eval.batch_size": "25"}))
    assert_clean(res, 0)
    assert json.loads((run / "config.json").read_text())["eval"]["batch_size"] == 25
    assert _metrics(run)["last"]["epoch"] == 2


def test_mid_training_other_eval_changes_are_still_refused(bench, run_copy, tmp_path):
    run = run_copy("quick_eval_failed")
    before = snapshot(tmp_path / "runs")
    res = bench(*tiny_run_argv("--resume", settings={"eval.n_test": "3"}))
    assert_refused(res, 2, str(run), "eval.batch_size", "eval.n_test")
    assert_intact(before, tmp_path / "runs")


def test_bench_eval_run_on_a_failed_evaluation_points_to_resume(bench, run_copy, tmp_path):
    run = run_copy("eval_failed")
    before = snapshot(tmp_path / "runs")
    res = bench("eval", "--run", str(run))
    assert_refused(res, 1, str(run), "--resume")
    assert_intact(before, tmp_path / "runs")


@pytest.mark.parametrize("how", ["zero-byte", "truncated", "garbage", "deleted"])
def test_damaged_best_pt_is_recovered_and_said_so(bench, run_copy, how, tmp_path):
    run = run_copy("eval_failed")
    best = run / "checkpoints" / "best.pt"
    if how == "deleted":
        best.unlink()
    else:
        best.write_bytes(TAMPER[how](best.read_bytes(), tmp_path))
    last = (run / "checkpoints" / "last.pt").read_bytes()
    res = bench(*tiny_run_argv("--resume"))
    assert_clean(res, 0)
    assert "best.pt" in res.out  # the recovery is reported
    doc = _metrics(run)
    recovered = doc["best"]
    assert "best.pt" in recovered["recovered"]  # why and how, in the record itself
    assert recovered["metrics"]["swd"]["value"] is not None
    # Only the last weights exist now: "best" is scored with them and labelled with their epoch.
    assert recovered["epoch"] == doc["last"]["epoch"]
    assert recovered["history_best_epoch"] == min(doc["history"], key=lambda h: h["swd"])["epoch"]
    assert (run / "checkpoints" / "last.pt").read_bytes() == last


def test_stale_temp_files_of_a_killed_write_are_cleaned_on_resume(bench, run_copy):
    run = run_copy("interrupted")
    ckpt = run / "checkpoints"
    stale = ckpt / ".last.pt.k1ll3d.tmp"
    stale.write_bytes((ckpt / "last.pt").read_bytes())  # a full-size copy, as a kill before rename leaves
    (ckpt / ".best.pt.x9.tmp").write_bytes(b"partial")
    res = bench(*tiny_run_argv("--resume"))
    assert_clean(res, 0)
    assert not list(ckpt.glob(".*.tmp")), list(ckpt.iterdir())
    assert (run / "metrics.json").is_file()


def test_resume_logs_no_duplicate_metric_points(bench, run_copy, tmp_path):
    from mlflow import MlflowClient

    run = run_copy("interrupted")
    res = bench(*tiny_run_argv("--resume"))
    assert_clean(res, 0)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = (run / "mlflow_run_id.txt").read_text().strip()
    keys = [k for k in client.get_run(run_id).data.metrics if k.startswith(("train/", "eval/"))]
    assert keys
    for key in keys:
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert len(steps) == len(set(steps)), f"{key}: steps {sorted(steps)}"


def test_a_kill_between_write_and_rename_leaves_no_lasting_temp_file(tmp_path):
    """kill -9 at the worst moment of a checkpoint write: the temp file is complete, the rename never happens.
    The old checkpoint survives, and the next save removes the full-size leftover."""
    import os
    import signal

    from bench.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"loop": {"iteration": 1}, "blob": torch.zeros(50_000)})
    pid = os.fork()
    if pid == 0:  # child: die by SIGKILL right before the rename
        os.replace = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        save_checkpoint(path, {"loop": {"iteration": 2}, "blob": torch.ones(50_000)})
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    left = list(path.parent.glob(".last.pt.*.tmp"))
    assert len(left) == 1 and left[0].stat().st_size > 200_000  # the full-size leftover the issue saw
    assert load_checkpoint(path)["loop"]["iteration"] == 1  # the old checkpoint is intact
    save_checkpoint(path, {"loop": {"iteration": 3}, "blob": torch.ones(50_000)})
    assert not list(path.parent.glob(".*.tmp"))
    assert load_checkpoint(path)["loop"]["iteration"] == 3
