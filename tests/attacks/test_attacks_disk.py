"""Attacks with a full disk: from the start, during training, while scoring, while downloading, and for real
on a 64 KiB tmpfs (when this machine lets a test mount one in a private mount namespace).

The user gets one line saying the disk is full and where; what was written before stays as it was; no empty or
misleading error.txt; and once space is free, `--resume` finishes the run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attack_kit import FullDisk, assert_clean, assert_intact, assert_refused, snapshot, tiny_run_argv

REPO = Path(__file__).resolve().parents[2]
#: Subprocesses import bench from the same place this test does.
PYTHONPATH = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p)


def _no_tmp_files(root: Path) -> None:
    left = [p for p in Path(root).rglob("*") if p.name.endswith(".tmp") or ".tmp-" in p.name]
    assert not left, left


def _error_txt_is_truthful(run: Path) -> None:
    """error.txt is either absent (nothing could be written) or names the real error."""
    path = run / "error.txt"
    if path.exists():
        text = path.read_text()
        assert "no space left" in text.lower(), f"misleading error.txt: {text!r}"


def test_disk_full_from_the_start(bench, tmp_path, monkeypatch):
    disk = FullDisk(tmp_path / "runs", capacity=0).install(monkeypatch)
    res = bench(*tiny_run_argv())
    assert_refused(res, 1, "no space left", "runs/toy/cut/seed0")
    assert disk.refused
    run = Path("runs/toy/cut/seed0")
    _error_txt_is_truthful(run)
    _no_tmp_files(tmp_path / "runs")


@pytest.mark.parametrize("budget", [200_000, 600_000], ids=["first-checkpoint", "later-checkpoint"])
def test_disk_full_during_training_keeps_the_last_checkpoint_and_resumes(bench, tmp_path, monkeypatch, budget):
    disk = FullDisk(tmp_path / "runs", capacity=budget).install(monkeypatch)
    res = bench(*tiny_run_argv())
    assert_refused(res, 1, "no space left")
    assert disk.refused
    run = Path("runs/toy/cut/seed0")
    _error_txt_is_truthful(run)
    _no_tmp_files(tmp_path / "runs")
    before = snapshot(tmp_path / "runs")
    last = run / "checkpoints" / "last.pt"
    if last.exists():
        import torch

        torch.load(last, weights_only=True)  # still a complete checkpoint
    monkeypatch.undo()  # space freed
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    assert_clean(bench(*tiny_run_argv("--resume")), 0)
    assert (run / "metrics.json").is_file()
    assert_intact({k: v for k, v in before.items() if not k.endswith(("error.txt", ".pt", "history.json"))},
                  tmp_path / "runs", allow_changed=tuple(k for k in before if k.endswith(".png")))


def test_disk_full_while_writing_the_scores(bench, run_copy, tmp_path, monkeypatch):
    run = run_copy("eval_failed")
    before = snapshot(tmp_path / "runs")
    FullDisk(tmp_path / "runs", capacity=0).install(monkeypatch)
    res = bench(*tiny_run_argv("--resume"))
    assert_refused(res, 1, "no space left")
    assert_intact(before, tmp_path / "runs")
    _no_tmp_files(tmp_path / "runs")
    assert not (run / "metrics.json").exists()


def test_disk_full_writing_bench_eval_json(bench, tmp_path, monkeypatch):
    import numpy as np

    from bench.data.synthetic import png_bytes

    for name in ("real", "fake"):
        (tmp_path / name).mkdir()
        for i in range(2):
            (tmp_path / name / f"{i}.png").write_bytes(png_bytes(np.full((8, 8, 3), 40 * i, np.uint8)))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "scores.json").write_text('{"kept": true}\n')
    FullDisk(tmp_path / "out", capacity=0).install(monkeypatch)
    res = bench("eval", "--real", "real", "--fake", "fake", "--metrics", "l1", "--json", "out/scores.json")
    assert_refused(res, 1, "no space left", "out/scores.json")
    assert json.loads((tmp_path / "out" / "scores.json").read_text()) == {"kept": True}


def test_disk_full_while_downloading(bench, tmp_path, monkeypatch):
    import dataclasses

    from attack_kit import HostileServer
    from bench.data import registry
    from bench.data.registry import Download

    monkeypatch.delenv("BENCH_DATA_ROOT", raising=False)
    with HostileServer({"/f": b"x" * 300_000}) as srv:
        spec = dataclasses.replace(registry.get_spec("facades"),
                                   downloads=(Download((srv.url("/f"),), "facades.tar.gz"),))
        monkeypatch.setitem(registry.DATASETS, "facades", spec)
        FullDisk(tmp_path / "cache", capacity=100_000).install(monkeypatch)
        res = bench("data", "get", "facades", "--root", tmp_path / "facades", "--no-progress")
    assert_refused(res, 1, "no space left", "facades.tar.gz")


def _can_mount_tmpfs() -> str | None:
    if not shutil.which("unshare"):
        return "unshare is not installed"
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d && rmdir $d"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot mount a private tmpfs here ({probe.stderr.strip()[:100]})"


def test_a_real_full_tmpfs(tmp_path):
    """The same run on a real 64 KiB tmpfs, mounted in a private mount namespace (nothing outside sees it)."""
    why = _can_mount_tmpfs()
    if why:
        pytest.skip(why)
    out = tmp_path / "small"
    out.mkdir()
    argv = [sys.executable, "-m", "bench.cli", *tiny_run_argv(out=str(out))]
    argv[argv.index("--tracking-uri") + 1] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = (f"mount -t tmpfs -o size=64k tmpfs {out} && cd {tmp_path} && "
              + " ".join(f"'{a}'" for a in argv) + f"; rc=$?; "
              f"cat {out}/toy/cut/seed0/error.txt > {tmp_path}/error_copy.txt 2>/dev/null; exit $rc")
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "BENCH_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout[-3000:]
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), proc.stderr[-3000:]
    assert "no space left" in lines[0].lower(), lines[0]
    copy = tmp_path / "error_copy.txt"
    if copy.exists() and copy.stat().st_size:
        assert "no space left" in copy.read_text().lower()
