"""Attacks with bad configuration: values, seeds, conflicting flags, and unreadable or wrong study specs.
Every one of them must be refused before anything is written (no run folder, no MLflow database)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from attack_kit import assert_refused, tiny_run_argv


def _nothing_written() -> None:
    assert not Path("runs").exists(), "a run folder was created"
    assert not Path("mlflow.db").exists(), "an MLflow database was created"


RUN_CASES = {
    "huge seed": (["--seeds", str(10**30)], "10000000000000000"),
    "seed 2**32": (["--seeds", str(2**32)], "4294967296"),
    "negative seed": (["--seeds", "-1"], "-1"),
    "repeated seed": (["--seeds", "3", "3"], "3"),
    "direction conflict": (["--direction", "circles2squares", "--set", "data.direction=squares2circles"],
                           "data.direction"),
    "unknown direction": (["--direction", "circles2triangles"], "circles2triangles"),
    "non-numeric value": (["--set", "lambda_NCE=abc"], "lambda_NCE"),
    "unknown method option": (["--set", "lambda_NCF=2"], "lambda_NCF"),
    "unknown train option": (["--set", "train.eval_evry=2"], "eval_evry"),
    "unknown section": (["--set", "trian.eval_every=2"], "trian"),
    "no equals sign": (["--set", "lambda_NCE"], "lambda_NCE"),
    "zero eval batch size": (["--set", "eval.batch_size=0"], "eval.batch_size"),  # failed only after training
    "negative eval_every": (["--set", "train.eval_every=-1"], "train.eval_every"),
    "negative max_train": (["--set", "data.max_train=-5"], "data.max_train"),
    "zero log_every": (["--set", "train.log_every=0"], "train.log_every"),
    "bad protocol": (["--set", "eval.protocol=bogus"], "eval.protocol"),
    "bad boolean": (["--set", "train.deterministic=maybe"], "deterministic"),
    "missing GPU": (["--device", "cuda:3"], "cuda:3"),
    "bad tracking URI": (["--tracking-uri", "bogus://nowhere"], "bogus://nowhere"),
    "unknown preset": (["--preset", "smok"], "smok"),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_bad_run_settings_are_refused_before_anything_is_written(bench, tmp_path, case):
    extra, culprit = RUN_CASES[case]
    argv = tiny_run_argv(*extra)
    if "--tracking-uri" in extra:  # the last --tracking-uri wins: drop the default one
        i = argv.index("--tracking-uri")
        del argv[i:i + 2]
    res = bench(*argv)
    assert_refused(res, 2, culprit)
    _nothing_written()


@pytest.mark.parametrize("direction", ["circles2squares", "AtoB"])
def test_the_same_direction_twice_is_accepted(direction):
    from bench.runner import build_run_config

    cfg = build_run_config("cut", "toy", 0, "smoke", {"data.direction": "circles2squares"}, direction=direction)
    assert cfg.data.direction == "circles2squares"


@pytest.mark.parametrize("methods", [["cutt"], ["cut", "nosuch"]])
def test_unknown_methods(bench, methods):
    res = bench("run", "--methods", *methods, "--dataset", "toy", "--preset", "smoke")
    assert_refused(res, 2, methods[-1])
    _nothing_written()


def test_unknown_dataset(bench):
    assert_refused(bench("run", "--methods", "cut", "--dataset", "horse2zebr"), 2, "horse2zebr", "horse2zebra")
    _nothing_written()


# ------------------------------------------------------------------------------------------ study specs
def _spec(path: Path, **changes) -> Path:
    raw = {"name": "typo", "method": "cut", "dataset": "toy", "preset": "smoke",
           "search_space": {"lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-3, "log": True}},
           "objective": {"metric": "swd"}, "seeds": [0], "n_trials": 3, "sampler": {"type": "tpe", "seed": 0}}
    raw.update(changes)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


SPEC_FILES = {
    "binary": lambda p: p.write_bytes(bytes(range(256)) * 8),
    "not UTF-8": lambda p: p.write_bytes("name: caf\xe9\nmethod: cut\n".encode("latin-1")),
    "NUL bytes": lambda p: p.write_bytes(b"name: x\x00\x00\nmethod: cut\n"),
    "empty": lambda p: p.write_text(""),
    "a list": lambda p: p.write_text("- cut\n- fastcut\n"),
    "YAML syntax": lambda p: p.write_text("name: [unclosed\nmethod: cut\n"),
    "unknown key": lambda p: _spec(p, n_trails=3),
    "max_failed_trials 0": lambda p: _spec(p, max_failed_trials=0),
    "max_failed_trials text": lambda p: _spec(p, max_failed_trials="three"),
    "huge sampler seed": lambda p: _spec(p, sampler={"type": "tpe", "seed": 10**30}),
    "negative study seed": lambda p: _spec(p, seeds=[-1]),
}


@pytest.mark.parametrize("case", list(SPEC_FILES))
def test_bad_study_spec_files_are_named(bench, tmp_path, case):
    path = tmp_path / "spec.yaml"
    SPEC_FILES[case](path)
    res = bench("study", "run", path, "--no-tracking")
    assert_refused(res, 2, str(path))
    assert not Path("results").exists()


SPEC_TYPOS = {
    "search-space parameter": ({"search_space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-3},
                                                 "lambda_NCEE": {"type": "float", "low": 0.5, "high": 2.0}}},
                               "lambda_NCEE"),
    "categorical value": ({"search_space": {"nce_layers": {"type": "categorical",
                                                           "choices": ["0,4,8", "0,4,x"]}}}, "0,4,x"),
    "variant override": ({"search_space": {"v": {"type": "variant",
                                                 "variants": {"A": {"lambda_NCE": 1}, "B": {"lamda_NCE": 2}}}}},
                         "lamda_NCE"),
    "fixed override": ({"overrides": {"train.eval_evry": 1}}, "eval_evry"),
    "int bound": ({"search_space": {"num_patches": {"type": "int", "low": 64, "high": 256},
                                    "n_epochs": {"type": "int", "low": -3, "high": 2}}}, "n_epochs"),
}


@pytest.mark.parametrize("case", list(SPEC_TYPOS))
def test_study_settings_are_checked_against_the_method_before_the_first_trial(bench, tmp_path, monkeypatch, case):
    import bench.studies.run as study_run

    changes, culprit = SPEC_TYPOS[case]
    path = _spec(tmp_path / "spec.yaml", **changes)
    calls = []

    def brake(*args, **kwargs):  # a trial must not even start; stop a runaway study on today's code
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        raise RuntimeError("a trial was started")

    monkeypatch.setattr(study_run, "run_trial", brake)
    res = bench("study", "run", path, "--no-tracking")
    assert_refused(res, 2, str(path), culprit)
    assert not calls, f"{len(calls)} trial(s) started"


@pytest.mark.parametrize("n", ["0", "-3"])
def test_n_trials_must_be_positive(bench, tmp_path, n):
    path = _spec(tmp_path / "spec.yaml")
    res = bench("study", "run", path, "--no-tracking", "--n-trials", n)
    assert_refused(res, 2, "--n-trials", n)
    assert not Path("results").exists()


@pytest.mark.parametrize("seeds", [["-1"], [str(10**30)]])
def test_study_seeds_from_the_command_line(bench, tmp_path, seeds):
    path = _spec(tmp_path / "spec.yaml")
    assert_refused(bench("study", "run", path, "--no-tracking", "--seeds", *seeds), 2, seeds[0])
