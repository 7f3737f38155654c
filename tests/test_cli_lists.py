"""CLI list flags read `a,b` and `a b` alike; `--set METHOD.key=value` scopes an override to one method."""

from __future__ import annotations

import logging

import pytest

from bench.cli import build_parser, main
from bench.cli.run import overrides_per_method
from bench.errors import ConfigError, UsageError
from bench.runner import build_run_config


@pytest.mark.parametrize("argv, dest, expected", [
    (["run", "--methods", "cut,fastcut", "--dataset", "toy"], "methods", ["cut", "fastcut"]),
    (["run", "--methods", "cut", "fastcut", "--dataset", "toy"], "methods", ["cut", "fastcut"]),
    (["run", "--methods", "cut,", "fastcut,cyclegan", "--dataset", "toy"], "methods", ["cut", "fastcut", "cyclegan"]),
    (["run", "--methods", "cut", "--seeds", "0,1", "2", "--dataset", "toy"], "seeds", [0, 1, 2]),
    (["table", "--metrics", "fid", "kid"], "metric", ["fid", "kid"]),
    (["table", "--metric", "fid,kid"], "metric", ["fid", "kid"]),
    (["table", "--datasets", "toy,afhq"], "datasets", ["toy", "afhq"]),
    (["table", "--dataset", "toy", "afhq", "--methods", "cut,cyclegan"], "methods", ["cut", "cyclegan"]),
    (["plot", "--kind", "curves,grid"], "kind", ["curves", "grid"]),
    (["plot", "--format", "png", "pdf"], "formats", ["png", "pdf"]),
    (["study", "status", "cut_nce", "--seeds", "0,1"], "seeds", [0, 1]),
    (["eval", "--real", "a", "--fake", "b", "--metrics", "fid", "kid"], "metrics", ["fid", "kid"]),
    (["eval", "--real", "a", "--fake", "b", "--metrics", "fid,kid"], "metrics", ["fid", "kid"]),
])
def test_every_list_flag_takes_commas_and_spaces(argv, dest, expected):
    assert getattr(build_parser().parse_args(argv), dest) == expected


def test_list_flag_items_are_checked(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["run", "--methods", "cut", "--seeds", "0,x", "--dataset", "toy"])
    assert exc.value.code == 2 and "invalid int value: 'x'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["plot", "--kind", "curves,grids"])
    assert "invalid choice: 'grids'" in capsys.readouterr().err


def test_scoped_override_reaches_only_its_method():
    cut = build_run_config("cut", "toy", 0, "smoke", {"cut.lambda_NCE": "2"})
    fastcut = build_run_config("fastcut", "toy", 0, "smoke", {"cut.lambda_NCE": "2"})
    assert cut.method_cfg.lambda_NCE == 2.0
    assert fastcut.method_cfg.lambda_NCE == build_run_config("fastcut", "toy", 0, "smoke").method_cfg.lambda_NCE
    cyclegan = build_run_config("cyclegan", "toy", 0, "smoke", {"cut.lambda_NCE": "2"})
    assert not hasattr(cyclegan.method_cfg, "lambda_NCE")
    with pytest.raises(ConfigError, match="lambda_NCF"):  # a scoped key is still checked for its method
        build_run_config("cut", "toy", 0, "smoke", {"cut.lambda_NCF": "2"})


def test_bare_override_applies_to_the_methods_that_have_it(caplog):
    with caplog.at_level(logging.INFO, logger="bench"):
        per = overrides_per_method({"lambda_NCE": "2", "train.eval_every": "1"}, ["cut", "cyclegan", "pix2pix"])
    assert per["cut"] == {"lambda_NCE": "2", "train.eval_every": "1"}
    assert per["cyclegan"] == per["pix2pix"] == {"train.eval_every": "1"}
    lines = [r.getMessage() for r in caplog.records if "lambda_NCE" in r.getMessage()]
    assert lines == ["--set lambda_NCE applies to cut; not to cyclegan, pix2pix (no such option; scope it as "
                     "METHOD.lambda_NCE to be explicit)"]


def test_override_no_selected_method_has_is_an_error(capsys):
    with pytest.raises(ConfigError, match="did you mean 'lambda_NCE'"):
        overrides_per_method({"lambda_NCF": "2"}, ["cut", "cyclegan"])
    with pytest.raises(ConfigError, match="lambda_NCE"):
        overrides_per_method({"lambda_NCE": "2"}, ["cyclegan"])
    with pytest.raises(UsageError, match="cut is not among the methods run here"):
        overrides_per_method({"cut.lambda_NCE": "2"}, ["cyclegan"])
    assert main(["run", "--methods", "cyclegan,pix2pix", "--dataset", "toy", "--set", "lambda_NCE=2"]) == 2
    assert "lambda_NCE" in capsys.readouterr().err
