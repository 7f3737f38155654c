"""bench reproduce: the plan of a published table, its cost, intervals, protocol spread and verdicts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.errors import UsageError
from bench.reproduce import Cell, CellResult, SeedScore, TableRef, parse_ref, plan
from bench.verdicts import t_interval, verdict
from run_fakes import fake_finished_run

PUBLISHED_HEADER = "paper,table,method,variant,setting,dataset,direction,metric,unit,value,protocol_note,source\n"


def test_parse_ref_names_what_exists():
    assert parse_ref("qsattn2022:1") == TableRef("qsattn2022", "1")
    with pytest.raises(UsageError, match="give PAPER:TABLE"):
        parse_ref("qsattn2022")
    with pytest.raises(UsageError, match="did you mean 'qsattn2022'"):
        parse_ref("qsatn2022:1")
    with pytest.raises(UsageError, match="its tables: 1, 2, 3, 4, 5"):
        parse_ref("qsattn2022:9")


def test_plan_covers_the_table_and_says_what_it_cannot(tmp_path):
    p = plan(parse_ref("qsattn2022:1"), seeds=(0, 1), preset="smoke", datasets=["horse2zebra"],
             out=str(tmp_path / "runs"))
    assert len(p.cells) == 14 and not any(c.skip for c in p.cells)  # 7 methods x (FID, SWD)
    assert len(p.runs) == 14 and {r.status for r in p.runs} == {"new"}
    assert {r.cfg.method for r in p.runs} == {"cyclegan", "munit", "cut", "fsesim", "qsattn_global", "qsattn_local",
                                              "qsattn_local_global"}
    # The same folders as `bench run`.
    assert str(p.runs[0].run_dir) == str(tmp_path / "runs" / "horse2zebra" / "cyclegan" / "seed0")
    d = plan(parse_ref("dclgan2021:1"), seeds=(0,), preset="paper", datasets=["horse2zebra"], methods=["cut", "drit"],
             out=str(tmp_path / "runs"))
    skip = {(c.method, c.metric): c.skip for c in d.cells}
    assert skip[("drit", "fid")] == "method not implemented in bench"
    text = d.text()
    assert "Not reproduced here" in text and "method not implemented in bench" in text
    with pytest.raises(UsageError, match="its datasets"):
        plan(parse_ref("qsattn2022:1"), datasets=["maps"])


def test_plan_cost_from_the_schedule_and_the_papers_s_per_iter(tmp_path):
    p = plan(parse_ref("qsattn2022:1"), seeds=(0,), preset="paper", datasets=["horse2zebra"], methods=["cut"],
             out=str(tmp_path / "runs"))
    (run,) = p.runs
    # 200 + 200 epochs x max(1067 horses, 1334 zebras) batches of 1 (the official unaligned epoch).
    assert run.iterations == 400 * 1334
    assert run.sec_per_iter == 0.24 and "dclgan2021 Table 1" in run.sec_per_iter_source
    assert run.gpu_hours == pytest.approx(400 * 1334 * 0.24 / 3600)
    assert "35.6" in p.text() and "GPU-hours" in p.text()


def test_t_interval_over_seeds():
    lo, hi = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * std 1 / sqrt(3)
    assert (lo, hi) == pytest.approx((2 - half, 2 + half))
    assert t_interval([5.0]) is None


def _result(values, published=45.5, preset="paper", size=256, spread=None, **kw):
    from bench.verdicts import mean_std

    cell = Cell("cut", "CUT", "", "horse2zebra", "horse2zebra", "fid", published, "", "src", "")
    scores = [SeedScore(i, f"r{i}", v, "" if v is not None else "FID needs 2 images", {"image_size": size}, "last",
                        400, preset, "fp32", size) for i, v in enumerate(values)]
    vals = [v for v in values if v is not None]
    res = CellResult(cell=cell, scores=scores, n=len(vals), spread=spread or {}, **kw)
    if vals:
        res.mean, res.std = mean_std(vals)
        res.t_interval = t_interval(vals)
    return res


def test_verdicts_say_why():
    v, why = verdict(_result([44.0, 46.0, 45.0]))
    assert v == "reproduced" and "inside" in why and "t interval" in why
    v, why = verdict(_result([60.0, 61.0, 62.0]))
    assert v == "not reproduced" and "15.5 worse" in why and "15.5 seed std" in why
    # A spread of protocol choices that reaches the published value turns the verdict.
    wide = {"min": 44.0, "max": 63.0, "largest": "resize", "largest_delta": -17.0}
    v, why = verdict(_result([60.0, 61.0, 62.0], spread=wide))
    assert v == "reproduced" and "widened by the protocol spread" in why
    v, why = verdict(_result([60.0, 61.0], preset="smoke", size=32))
    assert v == "not comparable" and "smoke preset" in why and "32px outputs (paper: 256px)" in why
    v, why = verdict(_result([None, None], preset="smoke", size=32))
    assert v == "not comparable" and "missing metric: FID not computed (FID needs 2 images)" in why


def test_bootstrap_fid_is_exact_for_the_identity_resample():
    from bench.metrics import fid as fid_mod
    from bench.spread import fid_bootstrap

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(60, 64)), rng.normal(0.3, 1.2, size=(40, 64))

    class Identity:
        def integers(self, low, high, n):
            return np.arange(n)

    assert fid_bootstrap(real, fake, 1, Identity())[0] == pytest.approx(
        fid_mod.frechet_distance_from_features(real, fake), rel=1e-9)
    draws = fid_bootstrap(real, fake, 50, np.random.default_rng(1))
    assert draws.std() > 0


@pytest.fixture()
def toy_table(tmp_path, monkeypatch):
    """A published table on the built-in toy dataset (so the whole command runs in seconds)."""
    folder = tmp_path / "published"
    folder.mkdir()
    rows = [f"toytest,1,cut,CUT,,toy,circles2squares,{m},,{v},test row,test fixture\n"
            for m, v in (("fid", 250.0), ("kid", 20.0), ("swd", 30.0))]
    (folder / "toytest.csv").write_text(PUBLISHED_HEADER + "".join(rows))
    monkeypatch.setenv("BENCH_PUBLISHED_DIR", str(folder))
    return folder


@pytest.mark.slow  # ~80 s on the shared 2-core machine: Inception passes on CPU
def test_reproduce_runs_renders_verdicts_and_a_rerun_trains_nothing(toy_table, tmp_path, monkeypatch, capsys,
                                                                     inception_weights):
    from bench.cli import main

    # Tiny on purpose (2 iterations, 6 test inputs): Inception passes dominate the time on CPU.
    argv = ["reproduce", "toytest:1", "--preset", "smoke", "--seeds", "0", "1", "--set", "train.max_iters=2",
            "--set", "train.eval_n=2", "--set", "eval.n_test=6", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--inception-weights", str(inception_weights), "--no-progress", "--bootstrap", "20"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    plan_text, table_text = out.split("### ", 1)
    assert "toytest:1 (smoke preset, seeds 0 1)" in plan_text and "| cut | toy circles→squares | 0 | new |" in plan_text
    fid_line = next(line for line in table_text.splitlines() if line.startswith("| CUT | toy circles→squares | FID"))
    cells = [c.strip() for c in fid_line.strip("|").split("|")]
    assert cells[3] == "250.0" and "± " in cells[4] and "(n=2)" in cells[4]
    assert cells[5].startswith("[") and cells[6].startswith("[")  # t and bootstrap intervals
    assert ".." in cells[7] and "largest:" in cells[7]  # the protocol spread and its main driver
    assert cells[8] == "not comparable" and "smoke preset" in cells[9] and "32px outputs" in cells[9]
    saved = json.loads((tmp_path / "results" / "reproduce" / "toytest_1.smoke.json").read_text())
    fid = next(r for r in saved["results"] if r["cell"]["metric"] == "fid")
    assert set(fid["spread"]["values"]) == {"epoch", "resize", "format", "test_set", "reference"}
    assert fid["spread"]["values"]["resize"] is not None and fid["spread"]["values"]["format"] is not None
    spread_cache = Path("runs/toy/cut/seed0/eval/spread.json")
    assert spread_cache.is_file()
    ckpt = Path("runs/toy/cut/seed0/checkpoints/last.pt")
    before = (ckpt.stat().st_mtime_ns, spread_cache.stat().st_mtime_ns)

    # Second time: the plan says finished, nothing trains, nothing is re-scored, same table.
    import bench.runner

    def no_training(*a, **k):
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr(bench.runner, "run_one", no_training)
    assert main(argv) == 0
    out2 = capsys.readouterr().out
    assert "| cut | toy circles→squares | 0 | finished |" in out2 and "0 run(s), 0 iterations" in out2
    assert (ckpt.stat().st_mtime_ns, spread_cache.stat().st_mtime_ns) == before
    assert out2.split("### ", 1)[1] == table_text


def test_dry_run_prints_the_plan_only(toy_table, capsys):
    from bench.cli import main

    assert main(["reproduce", "toytest:1", "--preset", "smoke", "--seeds", "0", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "To train: 1 run(s)" in out and "###" not in out
    assert not Path("runs").exists()


def test_spread_rescores_saved_images_once_and_finished_runs_are_kept(toy_table, tmp_path):
    from bench import reproduce

    ref = parse_ref("toytest:1")
    p = plan(ref, seeds=(0, 1), preset="smoke", methods=["cut"], out=str(tmp_path / "runs"))
    for r in p.runs:
        fake_finished_run(r.cfg)
    p = plan(ref, seeds=(0, 1), preset="smoke", methods=["cut"], out=str(tmp_path / "runs"))
    assert {r.status for r in p.runs} == {"finished"}

    def no_training(cfg, **kw):
        raise AssertionError("a finished run was retrained")

    done = reproduce.execute(p, run_fn=no_training)
    assert len(done.kept) == 2 and not done.trained
    table = reproduce.collect(p, bootstrap=0)
    swd = next(r for r in table.results if r.cell.metric == "swd")
    assert swd.n == 2 and swd.t_interval is not None
    sp = swd.spread
    assert set(sp["values"]) == {"epoch", "resize", "format", "test_set", "reference"}
    assert sp["values"]["resize"] is None and "Inception metrics only" in sp["notes"]["resize"]
    for choice in ("epoch", "format", "test_set", "reference"):
        assert sp["values"][choice] is not None, choice
    assert sp["min"] <= sp["baseline"] <= sp["max"] and sp["largest"] in sp["values"]
    # The best-epoch fakes are brighter (140 vs 120/130) than the last ones: the epoch choice moves SWD.
    assert sp["values"]["epoch"] != pytest.approx(sp["baseline"])
    assert swd.verdict == "not comparable" and "smoke preset" in swd.reason
    cache = tmp_path / "runs" / "toy" / "cut" / "seed0" / "eval" / "spread.json"
    stamp = cache.stat().st_mtime_ns
    again = reproduce.collect(p, bootstrap=0)
    assert cache.stat().st_mtime_ns == stamp  # nothing re-scored the second time
    assert next(r for r in again.results if r.cell.metric == "swd").spread == sp
    md = reproduce.render(table, "md")
    assert "| CUT | toy circles→squares | SWD↓ | 30.0 |" in md and "not comparable" in md
    # The saved table reads back as it was (what `bench report --reproduce` renders).
    paths = reproduce.save(table, tmp_path / "res")
    assert reproduce.render(reproduce.load(paths[0]), "md") == md
    fid = next(r for r in table.results if r.cell.metric == "fid")
    assert fid.n == 0 and "missing metric" in fid.reason  # the fabricated runs scored SWD only


def test_the_cli_on_finished_runs_trains_nothing_and_tracks_the_table(toy_table, tmp_path, capsys):
    from bench.cli import main
    from bench.runner import build_run_config
    from bench.tracking import TAG_KIND, make_client

    for seed in (0, 1):
        fake_finished_run(build_run_config("cut", "toy", seed, "smoke", out="runs"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["reproduce", "toytest:1", "--preset", "smoke", "--seeds", "0", "1", "--bootstrap", "0",
                 "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "To train: 0 run(s)" in out and "2 finished run(s) kept" in out
    assert "| CUT | toy circles→squares | SWD↓ | 30.0 |" in out
    client = make_client(uri)
    (exp,) = [e for e in client.search_experiments() if e.name == "reproduce"]
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags[TAG_KIND] == "reproduce" and run.data.tags["bench.reproduce.table"] == "toytest:1"
    assert run.data.tags["bench.reproduce.not_comparable"] == "3"


def test_a_folder_holding_another_preset_is_neither_reused_nor_overwritten(toy_table, tmp_path):
    from bench import reproduce
    from bench.runner import build_run_config

    fake_finished_run(build_run_config("cut", "toy", 0, "smoke", out="runs"))
    p = plan(parse_ref("toytest:1"), seeds=(0,), preset="paper", out="runs")
    (run,) = p.runs
    assert run.status == "other settings"
    assert "other settings" in p.text() and "choose another --out" in p.text()

    def no_training(cfg, **kw):
        raise AssertionError("the smoke run's folder was reused for the paper preset")

    done = reproduce.execute(p, run_fn=no_training)
    assert "preset 'smoke'" in done.failed["toy/cut/seed0"]
    swd = next(r for r in reproduce.collect(p, bootstrap=0, spread=False).results if r.cell.metric == "swd")
    assert swd.n == 0 and "preset 'smoke'" in swd.reason  # the smoke number is not shown as the paper run's
