"""Progress a person can follow: plain lines every N seconds when stdout is a file, a bar on a terminal."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from bench.formatting import duration, human, rate
from bench.progress import Reporter

REPO = Path(__file__).resolve().parent.parent
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ")


def test_numbers_for_people():
    assert human(0.0002504130762999892) == "2.5e-4" and human(0.25) == "0.25" and human(64) == "64"
    assert human(1.0) == "1" and human("0.00025") == "2.5e-4" and human("resnet_9blocks") == "resnet_9blocks"
    assert rate(0.25) == "4.0 it/s" and rate(12.34) == "12.3 s/it" and rate(2.5) == "2.50 s/it"
    assert duration(3725) == "1:02:05" and duration(7) == "0:07"


def test_plain_lines_come_every_interval_even_when_the_loop_is_silent():
    out = io.StringIO()
    with Reporter(total_runs=2, tty=False, interval=0.3, stream=out) as reporter:
        handle = reporter.run("cut/seed0")
        handle.set_name("cut/smoke/seed0")
        handle.start(total=10, epochs=2)
        for i in range(1, 4):
            time.sleep(0.05)
            handle.update(completed=i, epoch=1, losses={"G_GAN": 0.51234, "NCE": 2.0})
        time.sleep(1.0)  # a long iteration: the timer thread still writes
        handle.phase("evaluating epoch 1: fid on 8 test images")
        time.sleep(0.5)
        handle.done("finished")
        reporter.run("cut/seed1")
    lines = out.getvalue().splitlines()
    assert all(STAMP.match(line) for line in lines) and all(line == line.rstrip() for line in lines)
    progress = [line for line in lines if "iteration 3/10" in line and "evaluating" not in line]
    assert len(progress) >= 2, lines  # ~1 s without an update at a 0.3 s interval
    line = progress[-1]
    assert "[run 1/2] cut/smoke/seed0 epoch 1/2 iteration 3/10 (30%)" in line
    assert re.search(r"\d+\.\d+ (it/s|s/it) elapsed \d:\d\d ETA \d:\d\d G_GAN=0.512 NCE=2$", line), line
    assert any("| evaluating epoch 1: fid on 8 test images (" in line for line in lines)
    assert "cut/smoke/seed0 finished after" in lines[-1] and "3/10 iterations" in lines[-1]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_bar_keeps_its_name_and_counts_runs(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = _Terminal()
    with Reporter(total_runs=3, stream=out) as reporter:
        assert reporter.tty
        handle = reporter.run("cut/seed0")
        handle.set_name("cut/smoke/seed0")
        handle.start(total=4, epochs=1)
        handle.update(completed=2, epoch=1, losses={"G_GAN": 0.5})
        handle.phase("final evaluation: last weights on 8 test images")
        reporter._rich.refresh()
        assert "final evaluation: last weights on 8 test images" in out.getvalue()  # the phase is visible
        handle.done("finished")
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # without the terminal's control codes
    final = [line for line in re.split(r"[\r\n]", shown) if line.strip()][-1]
    assert "cut/smoke/seed0" in final and "run 1/3" in final and "4/4" in final and "G_GAN=0.5" in final


def test_run_with_stdout_in_a_file_writes_progress_lines(tmp_path):
    """`bench run ... > log` (not a TTY): a progress line at least every interval, plain log lines."""
    log_file = tmp_path / "run.log"
    cmd = [sys.executable, "-m", "bench.cli", "run", "--methods", "cut", "--dataset", "toy", "--preset", "smoke",
           "--device", "cpu", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--out", str(tmp_path / "runs"),
           "--progress-interval", "1", "--set", "data.max_train=8", "--set", "train.eval_n=4", "--set",
           "eval.n_test=4", "--set", "eval.metrics=swd", "--set", "train.select_metric=swd"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "80"}
    with open(log_file, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=tmp_path, env=env, timeout=900)
    lines = log_file.read_text().splitlines()
    assert proc.returncode == 0, "\n".join(lines[-30:])
    progress = [line for line in lines if "[run 1/1] cut/smoke/seed0" in line]
    assert any("iteration" in line and "ETA" in line and "s/it" in line or "it/s" in line for line in progress)
    assert any("final evaluation" in line for line in progress) and "finished after" in progress[-1]
    times = [datetime.strptime(STAMP.match(line).group(1), "%Y-%m-%d %H:%M:%S") for line in progress]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert max(gaps) <= 1 + 2, gaps  # every interval (1 s here; 30 s by default), with a scheduling margin
    logged = [line for line in lines if STAMP.match(line) and " INFO " in line]
    assert logged and all(line == line.rstrip() for line in logged + progress)  # no padding to a terminal width
    assert any(len(line) > 80 for line in logged), "log lines are not hard-wrapped at 80 columns"
