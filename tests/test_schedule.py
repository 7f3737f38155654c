"""Schedules as the official loops run them: iteration budgets whatever the dataset size, cut schedules said so,
cVAE-GAN's updates per epoch, CycleGAN/pix2pix's decay epoch."""

from __future__ import annotations

import json
import logging

import pytest

import methods
from bench.runner import build_run_config, run_one
from bench.schedule import TAG_SCHEDULE_CUT, plan
from bench.tables import TableOptions, build_table
from bench.tracking import Tracker, make_client
from bench.train import Trainer


class Items:
    """A stand-in training set: only its length matters to the schedule."""

    def __init__(self, n: int) -> None:
        self.n = self.full_len = n

    def __len__(self) -> int:
        return self.n


def trainer_for(method: str, dataset: str, n_items: int, preset: str = "paper", **overrides) -> Trainer:
    cfg = build_run_config(method, dataset, 0, preset, overrides)
    m = methods.get(method)(cfg.method_cfg, device="meta")  # the schedule never touches weights
    return Trainer(cfg, m, Items(n_items), None, Tracker.disabled(), "unused")


# ----------------------------------------------------------------------------- iteration budgets
@pytest.mark.parametrize(("method", "budget"), [("nicegan", 300_000), ("nicegan_light", 300_000),
                                                ("munit", 1_000_000)])
def test_budget_methods_train_their_full_budget_on_any_dataset_size(method, budget):
    """A 400-image set ran 120k of NICE-GAN's 300k (and MUNIT 400k of 1M): the epoch bound cut the budget."""
    for n in (400, 1067, 20_000):
        t = trainer_for(method, "facades", n)
        assert t.total_iterations == t.planned_iterations == budget
        assert t.total_epochs == -(-budget // n)
        assert plan(t.cfg, t).cuts == []


def test_nicegan_lr_decays_over_the_second_half_of_the_budget():
    t = trainer_for("nicegan", "facades", 400)
    m = t.method
    assert m.lr_lambda(149_998) == 1.0 and m.lr_lambda(150_000) < 1.0 and m.lr_lambda(299_999) == 0.0


@pytest.mark.parametrize(("method", "smoke_budget", "recipe"), [("nicegan", 64, 300_000), ("munit", 64, 1_000_000)])
def test_smoke_runs_the_budget_scaled_by_smoke_not_cut_by_the_dataset(method, smoke_budget, recipe):
    for n in (4, 32):  # horse2zebra_mini has 4 images per domain, toy 32
        t = trainer_for(method, "horse2zebra", n, "smoke")
        assert (t.total_iterations, t.total_epochs) == (smoke_budget, smoke_budget // n)
        assert plan(t.cfg, t).cuts == [f"preset smoke: {smoke_budget} of the recipe's {recipe} iterations"]


# ----------------------------------------------------------------------------- cuts
def test_every_limit_that_cuts_the_schedule_is_named():
    t = trainer_for("cut", "horse2zebra", 1334, "smoke")
    assert plan(t.cfg, t).cuts == ["preset smoke: 2 of the recipe's 400 epochs"]
    t = trainer_for("cut", "horse2zebra", 1334, n_epochs="5")
    assert plan(t.cfg, t).cuts == ["--set: 205 of the recipe's 400 epochs"]
    t = trainer_for("nicegan", "horse2zebra", 1334, **{"train.max_iters": "1000"})
    assert plan(t.cfg, t).cuts == ["train.max_iters=1000: stops at 1000 of 300000 iterations"]
    assert t.total_iterations == 1000
    cfg = build_run_config("cut", "horse2zebra", 0, "paper", {"data.max_train": "100"})
    data = Items(100)
    data.full_len = 1334
    t = Trainer(cfg, methods.get("cut")(cfg.method_cfg, device="meta"), data, None, Tracker.disabled(), "unused")
    assert plan(cfg, t).cuts == ["data.max_train=100: 100 of 1334 training items per epoch"]
    t = trainer_for("cut", "horse2zebra", 1334)
    schedule = plan(t.cfg, t)
    assert schedule.cuts == [] and schedule.params()["schedule.cut"] == "no"
    assert schedule.params()["schedule.iterations"] == 400 * 1334


def _cut_run(tmp_path, caplog, method: str, **extra):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = build_run_config(method, "toy", 0, "smoke", {
        "data.max_train": "4", "train.eval_n": "2", "eval.n_test": "2", "eval.metrics": "swd",
        "train.select_metric": "swd", "train.progress": "false", "eval.score_best": "false", **extra},
        out=str(tmp_path / "runs"), tracking_uri=uri)
    with caplog.at_level(logging.WARNING, logger="bench.runner"):
        result = run_one(cfg)
    assert result.status == "finished"
    doc = json.loads((cfg.run_dir / "metrics.json").read_text())
    data = make_client(uri).get_run(result.mlflow_run_id).data
    table = build_table(TableOptions(metrics=("swd",), select="last"), tracking_uri=uri)
    return doc, data, table, [r.getMessage() for r in caplog.records]


def test_a_cut_run_says_so_in_its_log_params_tags_metrics_and_table(tmp_path, caplog):
    doc, data, table, log_lines = _cut_run(tmp_path, caplog, "cut")
    cuts = ["preset smoke: 2 of the recipe's 400 epochs", "data.max_train=4: 4 of 32 training items per epoch"]
    assert doc["schedule"] == {"iterations": 8, "epochs": 2, "cut": cuts}
    assert any("8 iterations (2 epochs of 4 items" in line and "CUT: " + "; ".join(cuts) in line for line in log_lines)
    assert data.params["schedule.cut"] == "; ".join(cuts) and data.params["schedule.iterations"] == "8"
    assert data.params["schedule.recipe_epochs"] == "400"
    assert data.tags[TAG_SCHEDULE_CUT] == "; ".join(cuts)
    assert any(note == f"schedule cut: {'; '.join(cuts)}" for note in table.footnotes)


@pytest.mark.slow
def test_munit_smoke_run_trains_the_smoke_scaled_budget_on_four_items(tmp_path, caplog):
    """MUNIT smoke on 4 toy items per epoch: 64 iterations = 16 epochs (the smoke scale of its 1M budget)."""
    doc, data, table, log_lines = _cut_run(tmp_path, caplog, "munit", **{"train.eval_every": "16"})
    assert doc["schedule"]["iterations"] == 64 and doc["schedule"]["epochs"] == 16
    assert doc["schedule"]["cut"][0] == "preset smoke: 64 of the recipe's 1000000 iterations"
    assert data.params["schedule.recipe_iterations"] == "1000000"
    assert doc["last"]["epoch"] == 16


# ----------------------------------------------------------------------------- official loops
def test_cvae_gan_makes_the_official_number_of_updates_per_epoch():
    """The official loop feeds batches of 2 and cVAE-GAN trains on the first half: 200 updates per 400 images."""
    assert trainer_for("cvae_gan", "facades", 400).n_batches == 200
    assert trainer_for("bicyclegan", "facades", 400).n_batches == 200
    assert trainer_for("cvae_gan", "facades", 400, batch_size="1", split_batch="false").n_batches == 400
    assert trainer_for("cae_gan", "facades", 400).n_batches == 400


@pytest.mark.parametrize("method", ["cyclegan", "pix2pix"])
def test_cyclegan_repository_decays_from_the_epoch_the_official_loop_does(method):
    """The official train.py steps the schedulers before each epoch: epoch 100 already decays, 200 trains at 0."""
    m = methods.build(method, device="meta")
    lam = [m.lr_lambda(e) for e in range(200)]  # bench's 0-based epoch e = the official epoch e + 1
    assert lam[98] == 1.0 and lam[99] == pytest.approx(1 - 1 / 101) and lam[199] == 0.0
    cut_loop = methods.build(method, device="meta", lr_update="epoch_end")
    assert cut_loop.lr_lambda(99) == 1.0 and cut_loop.lr_lambda(199) == pytest.approx(1 / 101)
    bicycle = methods.build("bicyclegan", device="meta")  # BicycleGAN's train.py steps at the epoch end
    assert bicycle.lr_lambda(99) == 1.0 and bicycle.lr_lambda(100) == pytest.approx(1 - 1 / 101)
