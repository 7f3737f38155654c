"""Configs: paper defaults, presets, typed overrides, clear errors; schedules; checkpoints; seeding."""

import random

import numpy as np
import pytest
import torch

import methods
from bench import seeding
from bench.checkpoint import atomic_write_json, load_checkpoint, save_checkpoint
from bench.config import DataConfig, TrainConfig, parse_set, split_overrides
from bench.errors import CheckpointError, ConfigError, UnknownNameError
from methods.schedules import linear_decay


def test_paper_defaults_and_variants():
    cut, fast = methods.get("cut").make_config(), methods.get("fastcut").make_config()
    assert (cut.lambda_NCE, cut.nce_idt, cut.n_epochs, cut.n_epochs_decay) == (1.0, True, 200, 200)
    assert (fast.lambda_NCE, fast.nce_idt, fast.flip_equivariance, fast.n_epochs, fast.n_epochs_decay) == (10.0, False, True, 150, 50)
    cg = methods.get("cyclegan").make_config()
    assert (cg.lambda_A, cg.lambda_identity, cg.pool_size, cg.init_type) == (10.0, 0.5, 50, "normal")


def test_smoke_preset_changes_sizes_not_algorithm():
    paper, smoke = methods.get("cut").make_config("paper"), methods.get("cut").make_config("smoke")
    assert smoke.crop_size < paper.crop_size and smoke.ngf < paper.ngf
    assert (smoke.lambda_NCE, smoke.nce_layers, smoke.nce_idt, smoke.gan_mode) == (paper.lambda_NCE, paper.nce_layers, paper.nce_idt, paper.gan_mode)


def test_overrides_are_typed_and_unknown_keys_rejected():
    cfg = methods.get("cut").make_config("paper", {"lambda_NCE": "2", "nce_layers": "0,4,8", "nce_idt": "false"})
    assert cfg.lambda_NCE == 2.0 and cfg.nce_layers == (0, 4, 8) and cfg.nce_idt is False
    with pytest.raises(ConfigError, match="lambda_NCE"):
        methods.get("cut").make_config("paper", {"lambda_NCF": "2"})
    with pytest.raises(ConfigError, match="expected float"):
        methods.get("cut").make_config("paper", {"lambda_NCE": "two"})
    with pytest.raises(ConfigError, match="nce_layers"):
        methods.get("cut").make_config("paper", {"nce_layers": "0,99"})
    with pytest.raises(ConfigError, match="load_size"):
        methods.get("cut").make_config("paper", {"crop_size": "300"})
    with pytest.raises(ConfigError, match="unknown preset"):
        methods.get("cut").make_config("fast")
    with pytest.raises(UnknownNameError, match="did you mean 'cut'"):
        methods.get("cutt")


def test_run_sections_split_and_validate():
    m, s = split_overrides({"lambda_NCE": "2", "train.eval_every": "3", "method.nce_T": "0.1"}, methods.get("cut").Config)
    assert m == {"lambda_NCE": "2", "nce_T": "0.1"} and s["train"] == {"eval_every": "3"}
    with pytest.raises(ConfigError, match="section"):
        split_overrides({"model.x": "1"}, methods.get("cut").Config)
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["lambda_NCE"])
    with pytest.raises(ConfigError):
        TrainConfig(device="gpu")
    with pytest.raises(ConfigError):
        DataConfig(max_train=-1)


def test_linear_decay_matches_official_policy():
    # n_epochs=2, decay=2: 1, 1, then 1 - 1/3, 1 - 2/3
    assert [linear_decay(e, 2, 2) for e in range(4)] == pytest.approx([1, 1, 2 / 3, 1 / 3])
    assert [linear_decay(e, 2, 2, warmup_epochs=2) for e in range(2)] == pytest.approx([0.5, 1.0])


def test_checkpoint_atomic_round_trip_and_corruption(tmp_path):
    path = tmp_path / "c" / "last.pt"
    save_checkpoint(path, {"w": torch.arange(3), "rng": seeding.rng_state(), "nested": {"a": [1, 2.5, "x"]}})
    state = load_checkpoint(path)
    assert torch.equal(state["w"], torch.arange(3)) and state["nested"] == {"a": [1, 2.5, "x"]}
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(CheckpointError, match="last.pt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    atomic_write_json(tmp_path / "m.json", {"b": 1})
    assert (tmp_path / "m.json").read_text().strip() == '{\n  "b": 1\n}'


def test_rng_state_restores_every_generator():
    seeding.seed_everything(3)
    state = seeding.rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seeding.set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
    assert seeding.derive_seed(1, 2) == seeding.derive_seed(1, 2) != seeding.derive_seed(2, 1)


# ------------------------------------------------------------------------------------------ checked when built
def _build(method="cut", dataset="toy", **overrides):
    from bench.runner import build_run_config

    return build_run_config(method, dataset, 0, "smoke", {k: str(v) for k, v in overrides.items()}, out="unused")


@pytest.mark.parametrize("overrides, message", [
    # a typo in eval.metrics trained for minutes and finished "finished" with no scores
    ({"eval.metrics": "fdi"}, r"eval.metrics=fdi: unknown metric \(did you mean 'fid'\?\); accepted for cut on "
                              r"toy circles2squares: fid, kid, swd, l1, psnr, ssim"),
    ({"eval.metrics": "fid,miou"}, r"eval.metrics=miou: not scored for cut on toy circles2squares"),
    ({"eval.metrics": "is"}, r"eval.metrics=is: the Inception Score"),
    # a typo in train.select_metric failed after the first epoch
    ({"train.select_metric": "fdi"}, r"train.select_metric=fdi: accepted .*: fid, kid, swd \(did you mean 'fid'"),
    ({"train.select_metric": "ssim"}, r"train.select_metric=ssim: accepted \(scored during training"),
    ({"eval.metrics": "swd"}, r"train.select_metric=fid: accepted .*: swd"),
    ({"eval.metrics": "l1", "train.select_metric": "l1"}, r"no metric the training loop can score"),
    # crop sizes the generator cannot restore: CycleGAN crashed, CUT silently changed its output size
    ({"crop_size": 30, "load_size": 36}, r"crop_size=30: must be a multiple of 4 .* e.g. 28 or 32"),
    # non-finite or non-positive rates, temperatures and weights trained to NaN weights that were then scored
    ({"lr": "inf"}, r"lr=inf: must be a finite number"),
    ({"nce_T": 0}, r"nce_T=0.0: must be a finite number > 0"),
    ({"lambda_NCE": "nan"}, r"lambda_NCE=nan: must be a finite number"),
    # eval settings failed after training
    ({"eval.batch_size": 0}, r"eval.batch_size=0: must be >= 1"),
    ({"eval.lpips_samples": 1}, r"eval.lpips_samples=1: must be >= 2"),
    ({"eval.inception_weights": "/nonexistent/w.pth"}, r"eval.inception_weights=/nonexistent/w.pth: no such file"),
])
def test_every_setting_is_checked_when_the_run_config_is_built(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        _build(**overrides)
    assert "\n" not in str(info.value)


def test_crop_size_check_covers_cyclegan_and_accepts_multiples():
    with pytest.raises(ConfigError, match="crop_size=34"):
        _build("cyclegan", crop_size=34, load_size=36)
    assert _build("cyclegan", crop_size=28, load_size=36).method_cfg.crop_size == 28
    assert _build(**{"eval.metrics": "swd", "train.select_metric": "swd"}).eval.metrics == ("swd",)


def test_temperature_and_learning_rates_of_other_methods():
    with pytest.raises(ConfigError, match="T=-0.1: must be a finite number > 0"):
        _build("fsesim", T=-0.1)
    with pytest.raises(ConfigError, match="lr_G=inf: must be a finite number"):
        _build("enco", lr_G="inf")


def test_study_status_and_the_config_module_import_neither_torch_nor_a_method():
    """`methods` imported every method module (hence torch) on import, so bench/cli/study.py kept its own copy
    of parse_set; read-only commands now stay light."""
    import subprocess
    import sys

    code = ("import sys, methods, bench.config, bench.tables, bench.studies.run, bench.cli.study, bench.metrics;"
            "from bench.cli import build_parser; build_parser();"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('methods.') and m != 'methods.registry'"
            " and m != 'methods.config'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    import bench.cli.study as study_cli

    assert not hasattr(study_cli, "_parse_set")
