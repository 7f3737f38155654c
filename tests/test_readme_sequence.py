"""The README's own command sequence, as a new user types it: command 1, then the Tracking section's
`--seeds 0 1` rerun, `bench table` and `bench plot`. Every step must exit 0.

The commands are read from README.md, so the test follows the README. A tiny iteration budget is appended to each
`bench run` (the same for every command, so the reruns see the same settings). The exact `--methods all`
sequence trains 21 methods twice and is in the slow set; the fast variant runs the same sequence for one method.
Offline, as on a fresh machine without the Inception weights: FID is n/a and the figures fall back to SWD.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from bench.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
#: Keeps every run to a few seconds: one iteration, a few images; the same for every command.
TINY = ["--set", "train.max_iters=1", "--set", "data.max_train=4", "--set", "eval.n_test=4", "--set", "train.eval_n=4",
        "--set", "eval.lpips_inputs=2", "--no-progress"]


def readme_sequence() -> list[list[str]]:
    """Command 1 (the `bench ...` part of the first set-up command), then the `bench` lines of the block that
    follows 'Tables and figures come from the same record'."""
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    first = blocks[0].strip()
    command_1 = first[first.index("bench run"):]
    tables = text[text.index("Tables and figures come from the same record"):]
    block = re.search(r"```bash\n(.*?)```", tables, flags=re.S).group(1)
    later = [line.split("#")[0].strip() for line in block.splitlines() if line.strip().startswith("bench ")]
    return [shlex.split(cmd)[1:] for cmd in [command_1, *later]]


def test_the_readme_has_the_sequence_this_test_drives():
    seq = readme_sequence()
    assert seq[0] == ["run", "--methods", "all", "--dataset", "toy", "--preset", "smoke"]
    assert seq[1] == ["run", "--methods", "all", "--dataset", "toy", "--preset", "smoke", "--seeds", "0", "1"]
    assert [c[0] for c in seq[2:]] == ["table", "plot"]


def _drive(tmp_path, capsys, methods: list[str] | None) -> list[str]:
    said = []
    for argv in readme_sequence():
        if argv[0] == "run":
            if methods is not None:
                i = argv.index("--methods")
                argv = argv[:i + 1] + methods + argv[i + 2:]
            argv = argv + TINY
        assert main(argv) == 0, argv
        out = capsys.readouterr()
        said.append(" ".join((out.out + " " + out.err).split()))
    return said


def _check_outcome(tmp_path, said, n_methods: int) -> None:
    run1, run2, table, plot = said
    assert "FID, KID×100 n/a" in run1 and "SWD ×1e3" in run1  # numbers on the first screen, n/a said once
    # The failed download is tried once: one warning during training, one note under the summary.
    assert run1.count("cannot download the FID Inception weights") == 2
    assert run2.count("finished (kept)") == n_methods  # seed 0 kept, seed 1 trained
    assert len(list((tmp_path / "runs" / "toy").glob("*/seed1/metrics.json"))) == n_methods
    assert "| Method |" in table
    figures = sorted(p.name for p in (tmp_path / "results" / "figures").iterdir())
    assert "curve_swd_toy_circles2squares.png" in figures and "grid_toy_circles2squares.pdf" in figures
    assert "not drawn: FID curves: FID was unavailable" in plot and "drew SWD curves instead" in plot


def test_readme_sequence_for_one_method_exits_0_at_every_step(tmp_path, offline, capsys):
    said = _drive(tmp_path, capsys, ["cut"])
    _check_outcome(tmp_path, said, 1)


@pytest.mark.slow
def test_readme_sequence_exactly_as_written_exits_0_at_every_step(tmp_path, offline, capsys):
    said = _drive(tmp_path, capsys, None)
    _check_outcome(tmp_path, said, 21)


@pytest.mark.fixtures
def test_the_failed_start_recovers_with_the_command_the_message_names(fixtures_dir, tmp_path, offline, capsys):
    cmd = ["run", "--methods", "cut", "--dataset", "horse2zebra", "--preset", "smoke"]
    assert main(cmd + TINY) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "pass --data-root" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()
    assert main(cmd + ["--data-root", str(fixtures_dir / "data" / "horse2zebra_mini")] + TINY) == 0
