"""The per-method, per-dataset official recipes: what the `paper` preset runs, each value with its source."""

from __future__ import annotations

import dataclasses
import re
import sys

import pytest

import methods
from bench.cli import main
from methods.base import CODE_DEFAULTS
from methods.recipes import DATASETS

NAMES = methods.names()
REPOS = ("junyanz/", "taesungp/", "JunlinHan/", "sapphire497/", "XiudingCai/", "lyndonzheng/", "alpc91/", "NVlabs/")


@pytest.mark.parametrize("name", NAMES)
def test_every_method_declares_a_recipe_of_its_own_config_fields(name):
    cls = methods.get(name)
    recipe = cls.RECIPE
    assert recipe is not None and recipe.code == cls.official_code
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    assert recipe.fields() <= fields, recipe.fields() - fields
    code = cls.make_config(CODE_DEFAULTS)
    for key, setting in recipe.defaults.items():  # the code defaults the table cites are the Config's
        assert getattr(code, key) == setting.value, (key, getattr(code, key), setting.value)
    for key, setting in recipe.common.items():
        assert setting.source.startswith(REPOS)
    for dataset in DATASETS:
        paper = cls.make_config("paper", dataset=dataset)
        for key, (setting, _) in recipe.settings(dataset).items():
            assert getattr(paper, key) == setting.value, (dataset, key)
            assert setting.source.startswith(REPOS) or setting.source.startswith("bench:"), setting.source
        assert recipe.command(dataset)


def test_the_recipes_the_issue_measured():
    get = methods.get
    for name in ("bicyclegan", "cvae_gan", "clr_gan"):
        f, m = get(name).make_config("paper", dataset="facades"), get(name).make_config("paper", dataset="maps")
        assert (f.n_epochs, f.n_epochs_decay, f.load_size, f.test_resize) == (200, 200, 256, (286, 256))
        assert (m.n_epochs, m.n_epochs_decay, m.load_size, m.test_resize) == (200, 200, 600, (512, 0))
        code = get(name).make_config(CODE_DEFAULTS, dataset="maps")
        assert (code.n_epochs, code.load_size) == (100, 286)
    assert get("lsesim").make_config("paper").augment and not get("lsesim").make_config(CODE_DEFAULTS).augment
    nice = get("nicegan").make_config("paper", dataset="horse2zebra")
    assert (nice.resize_filter, nice.flip_first, nice.sampling, nice.iterations) == ("bilinear", True, "cycle", 300_000)
    munit = get("munit").make_config("paper")
    assert (munit.resize_aspect, munit.sampling, munit.test_resize) == ("shorter_side", "zip", (256, 0))
    # the smoke preset scales the recipe, it keeps its switches
    assert get("munit").make_config("smoke", dataset="facades").recon_x_cyc_w == 0.0
    assert get("bicyclegan").make_config("smoke", dataset="maps").test_resize == (32, 0)


@pytest.mark.parametrize("name", NAMES)
def test_recipe_cli_prints_every_dataset_and_the_source_of_each_value(name, capsys):
    assert main(["methods", "--recipe", name]) == 0
    out = capsys.readouterr().out
    recipe = methods.get(name).RECIPE
    for dataset in DATASETS:
        assert f"\n{dataset}: {recipe.command(dataset)}" in out
    rows = [line for line in out.splitlines() if re.match(r"^  [*+ ] \w+ ", line)]
    assert len(rows) >= len(DATASETS) * len(recipe.defaults)
    assert all(any(repo in row for repo in REPOS) or "bench:" in row for row in rows), rows


def test_recipe_cli_one_dataset_and_unknown_names(capsys):
    assert main(["methods", "--recipe", "bicyclegan", "--dataset", "maps"]) == 0
    out = capsys.readouterr().out
    assert "* load_size       600" in out and "scripts/train.sh (maps: LOAD_SIZE=600)" in out
    assert "horse2zebra:" not in out
    assert main(["methods", "--recipe", "bicyclegann"]) == 2
    assert main(["methods", "--recipe", "cut", "--dataset", "horse2zebr"]) == 2


@pytest.mark.parametrize("name", NAMES)
def test_docstrings_name_the_official_commands_their_paper_preset_runs(name):
    cls = methods.get(name)
    doc = (sys.modules[cls.__module__].__doc__ or "") + (cls.__doc__ or "")
    recipe = cls.RECIPE
    commands = [recipe.default_command] + [r.command for r in recipe.datasets.values()]
    for command in commands:
        for path in re.findall(r"[\w./-]+\.(?:sh|yaml|py|md)\b", re.sub(r"python \S+", "", command)):
            assert path in doc, f"{cls.__module__} docstring does not name {path}"
    assert "paper` preset" in doc
