"""bench report: one self-contained HTML page, rendered by headless Chromium into a screenshot."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from run_fakes import fake_finished_run

PUBLISHED_HEADER = "paper,table,method,variant,setting,dataset,direction,metric,unit,value,protocol_note,source\n"


@pytest.fixture()
def runs(tmp_path, monkeypatch):
    """Two methods x two seeds of fabricated finished runs on toy, and a published SWD for CUT."""
    from bench.runner import build_run_config

    folder = tmp_path / "published"
    folder.mkdir()
    (folder / "toytest.csv").write_text(PUBLISHED_HEADER + "toytest,1,cut,CUT,,toy,circles2squares,swd,,30.0,"
                                        "test row,test fixture (arXiv 0000.00000)\n")
    monkeypatch.setenv("BENCH_PUBLISHED_DIR", str(folder))
    for method in ("cut", "fastcut"):
        for seed in (0, 1):
            fake_finished_run(build_run_config(method, "toy", seed, "smoke", out="runs"))
    return Path("runs")


def test_dataset_report_is_one_self_contained_page(runs):
    from bench.cli import main

    assert main(["report", "--dataset", "toy", "--metric", "swd", "--out", "toy.html"]) == 0
    page = Path("toy.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<table") == 2
    # Nothing external: every image is a data URI, no script, no link.
    srcs = re.findall(r"src='([^']+)'", page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<script" not in page and "<link" not in page and "http" not in page.replace("https://", "")
    assert "not comparable" in page and "smoke preset" in page  # the verdict of CUT's SWD, and why
    assert "no published value" in page  # FastCUT has no published SWD here
    assert "SWD vs epoch" in page  # the curve, from history.json
    assert page.count("alt='cut s0 ") == 3 and page.count("alt='fastcut s1 ") == 3  # 3 inputs x 4 runs grid


def test_report_of_a_saved_reproduce_table(runs, tmp_path):
    from bench import reproduce
    from bench.cli import main

    p = reproduce.plan(reproduce.parse_ref("toytest:1"), seeds=(0, 1), preset="smoke", out="runs")
    reproduce.save(reproduce.collect(p, bootstrap=0), "results/reproduce")
    assert main(["report", "--reproduce", "toytest:1", "--preset", "smoke", "--metric", "swd"]) == 0
    page = Path("results/reports/toytest_1.smoke.html").read_text()
    assert "bench reproduce toytest:1 (smoke preset)" in page and "Protocol spread" in page
    assert "largest:" in page  # the spread column of the saved table
    from bench.errors import DataError

    with pytest.raises(DataError, match="run `bench reproduce toytest:1 --preset paper` first"):
        from bench.cli.report import cmd_report
        import argparse

        cmd_report(argparse.Namespace(reproduce="toytest:1", preset="paper", results="results/reproduce",
                                      methods=None, metrics="fid", n_images=4, out=None))


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install -y chromium)")
def test_the_page_renders_in_headless_chromium(runs, tmp_path):
    """Chromium lays the page out and paints it: the screenshot is a real picture, not a blank page."""
    import numpy as np
    from PIL import Image

    from bench.cli import main

    assert main(["report", "--dataset", "toy", "--metric", "swd", "--out", str(tmp_path / "toy.html")]) == 0
    shot = tmp_path / "toy.png"
    proc = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,1600",
                           f"--screenshot={shot}", (tmp_path / "toy.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert img.shape[:2] == (1600, 1280)
    # Text, table rules, the curve and the thumbnails: many distinct colours and dark pixels, not a white page.
    assert img.std() > 20 and (img.mean(axis=2) < 100).mean() > 0.005
    assert len(np.unique(img.reshape(-1, 3)[::7], axis=0)) > 200
