"""Study specs: the shipped YAML files, validation messages, grids, conditional parameters, resolution."""

from __future__ import annotations

import math

from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.studies.spec import find_spec, load_spec, parse_spec

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO / "studies").glob("*.yaml"))


def base(**extra):
    raw = {"name": "t", "method": "_quadratic", "dataset": "toy",
           "search_space": {"x": {"type": "categorical", "choices": [1, 2]}}, "sampler": "grid"}
    raw.update(extra)
    return raw


def test_every_paper_table_has_a_spec():
    names = {p.stem for p in SHIPPED}
    assert {"qsattn_queries", "qsattn_ablation", "qsattn_layers", "bicyclegan_encoder", "bicyclegan_nz",
            "enco_dag", "cut_nce", "cut_lr_tpe"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_specs_resolve_to_valid_run_configs(path):
    """Every grid point (or enqueued point) builds a run config for the paper and for toy/smoke."""
    from bench.studies.run import RunOptions, validate_points

    spec = load_spec(path)
    assert spec.paper, "each shipped spec names the paper table it reproduces"
    validate_points(spec, RunOptions())
    smoke = spec.with_options(dataset="toy", preset="smoke")
    assert smoke.study_name == f"{spec.name}.toy.smoke" and smoke.datasets == ("toy",)
    validate_points(smoke, RunOptions())


def test_qsattn_queries_is_table5_grid_against_cut():
    spec = load_spec(REPO / "studies" / "qsattn_queries.yaml")
    points = spec.grid_points()
    assert len(points) == 16
    assert {(p["method"], p["num_patches"]) for p in points} == {
        (m, n) for m in ("qsattn_global", "qsattn_local", "qsattn_local_global", "cut") for n in (64, 128, 256, 512)}
    method, dataset, overrides = spec.resolve({"method": "cut", "num_patches": 128})
    assert (method, dataset, overrides["num_patches"]) == ("cut", "horse2zebra", 128)
    assert overrides["train.select_metric"] == "fid"
    smoke = spec.with_options(preset="smoke")
    assert smoke.resolve({"method": "cut", "num_patches": 64})[2]["train.eval_every"] == 1
    assert spec.resolve({"method": "cut", "num_patches": 64})[2]["train.eval_every"] == 20
    cli = smoke.with_options(overrides={"train.eval_every": "2", "num_patches": "32"})
    assert cli.resolve({"method": "cut", "num_patches": 64})[2] == {
        **smoke.fixed_overrides(), "train.eval_every": "2", "num_patches": 64}, "--set beats the preset, not the grid"


def test_qsattn_ablation_variants_map_to_the_method_options():
    spec = load_spec(REPO / "studies" / "qsattn_ablation.yaml")
    assert [p["model"] for p in spec.grid_points()] == list("ABCDEFGH")
    assert spec.resolve({"model": "B"})[0] == "qsattn_global"
    assert spec.resolve({"model": "B"})[2]["qs_select"] == "random"
    assert spec.resolve({"model": "C"})[2]["qs_route"] is False
    assert spec.resolve({"model": "E"})[2]["qs_route_domain"] == "self"
    assert spec.resolve({"model": "F"})[2]["qs_select"] == "maxmean"
    assert spec.resolve({"model": "G"})[0] == "qsattn_local"
    assert spec.resolve({"model": "H"})[0] == "qsattn_local_global"


def test_conditional_parameters_shape_the_grid():
    spec = load_spec(REPO / "studies" / "enco_dag.yaml")
    points = spec.grid_points()
    assert len(points) == 1 + 3 * 3
    assert points[0] == {"dag": False}
    assert all(set(p) == {"dag", "oversample_ratio", "random_ratio"} for p in points[1:])


def test_dataset_parameter_becomes_columns_and_collapses_for_smoke():
    spec = load_spec(REPO / "studies" / "qsattn_layers.yaml")
    assert spec.datasets == ("afhq", "horse2zebra") and spec.grid_size() == 4
    assert spec.resolve({"dataset": "afhq", "model": "B"})[1:] == ("afhq", {**spec.fixed_overrides(),
                                                                            "qs_layers": "0,4,8,12,16"})
    toy = spec.with_options(dataset="toy")
    assert toy.grid_size() == 2 and toy.datasets == ("toy",)


def test_tpe_spec_samples_conditional_space_with_optuna():
    import optuna

    spec = parse_spec(base(sampler={"type": "tpe", "seed": 3}, n_trials=5, search_space={
        "opt": {"type": "categorical", "choices": ["a", "b"]},
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "k": {"type": "int", "low": 1, "high": 9, "step": 2, "when": {"opt": "b"}}}))
    study = optuna.create_study()
    for _ in range(12):
        trial = study.ask()
        params = spec.suggest(trial)
        assert 1e-4 <= params["lr"] <= 1e-2
        assert ("k" in params) == (params["opt"] == "b")
        if "k" in params:
            assert params["k"] in (1, 3, 5, 7, 9)
        study.tell(trial, 1.0)


@pytest.mark.parametrize("raw, message", [
    (base(sampler="grd"), "sampler.type='grd' is not one of"),
    (base(objectiv={"metric": "fid"}), "unknown key objectiv (did you mean 'objective'?)"),
    (base(search_space={"x": {"type": "float", "low": 0, "high": 1}}), "search_space.x: a float parameter of a grid"),
    (base(search_space={"x": {"type": "int", "low": 3, "high": 1}}), "search_space.x: low (3) must be <= high (1)"),
    (base(search_space={"x": {"type": "float", "low": 0, "high": 1, "log": True, "grid": [1]}}), "needs low > 0"),
    (base(search_space={"y": {"choices": [1], "when": {"x": 1}}, "x": {"choices": [1]}}),
     "search_space.y.when refers to 'x', which must be a parameter defined before it"),
    (base(search_space={"seed": [0, 1]}), "seeds are not searched"),
    (base(sampler="tpe"), "n_trials is required for a tpe sampler"),
    (base(objective={"metrics": ["fid", "kid"]}, pruner="median"), "pruner.type must be none for a multi-objective"),
    (base(objective={"metric": "recon_l1"}, pruner="median"), "'recon_l1' is only scored at the end"),
    (base(seeds=[0, 0]), "seeds has duplicates"),
    (base(search_space={"x": {"type": "categorical", "choices": [[1, 2]]}}), "write lists as \"0,4,8\""),
    (base(method="_secret"), "reserved for custom objectives"),
    (base(name="a b"), "may contain only letters"),
    ({"name": "t", "dataset": "toy"}, "missing required key 'method'"),
])
def test_spec_errors_name_the_file_and_key(raw, message):
    with pytest.raises(ConfigError) as err:
        parse_spec(raw, "studies/bad.yaml")
    assert str(err.value).startswith("studies/bad.yaml: ")
    assert message in str(err.value)


def test_yaml_errors_and_lookup(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_spec(bad)
    assert find_spec("qsattn_queries").name == "qsattn_queries.yaml"
    # The README's `bench study run studies/cut_lr_tpe.yaml` also works outside the repository (cwd = tmp).
    assert find_spec("studies/cut_lr_tpe.yaml") == REPO / "studies" / "cut_lr_tpe.yaml"
    with pytest.raises(ConfigError, match="did you mean 'qsattn_queries'"):
        find_spec("qsattn_querys")


def test_directions_default_by_metric_and_fingerprint_ignores_budget():
    spec = parse_spec(base(objective={"metrics": ["fid", "lpips_diversity"]}))
    assert spec.objective.directions == ("minimize", "maximize")
    assert spec.fingerprint() == spec.with_options(n_trials=99, storage="x.journal").fingerprint()
    assert spec.fingerprint() != spec.with_options(overrides={"epochs": 5}).fingerprint()
    assert spec.fingerprint() != spec.with_options(seeds=(0, 1)).fingerprint()


def _fake_study(spec, rows):
    """An in-memory study with finished trials: rows of (params, [per-seed fid]) ."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    study = optuna.create_study()
    for params, fids in rows:
        dists = {p.name: CategoricalDistribution(list(p.choices)) for p in spec.search_space if p.name in params}
        seeds = {str(i): {"last": {"fid": v, "swd": v / 2, "epoch": 2}} for i, v in enumerate(fids)}
        study.add_trial(optuna.create_trial(params=params, distributions=dists, value=sum(fids) / len(fids),
                                            user_attrs={"bench:seed_metrics": seeds}))
    return study


def test_study_table_puts_published_numbers_beside_reproduced_ones():
    from bench.studies.report import study_table
    from bench.tables import render

    spec = load_spec(REPO / "studies" / "qsattn_queries.yaml").with_options(seeds=(0, 1, 2))
    study = _fake_study(spec, [({"num_patches": 64, "method": "qsattn_global"}, [50.0, 51.0, 52.0]),
                               ({"num_patches": 64, "method": "cut"}, [55.0, 56.0, 57.0]),
                               ({"num_patches": 64, "method": "qsattn_local"}, [60.0, 60.5, 60.0])])
    table = study_table(study, spec)
    assert table.label_names == ("num_patches", "Method")  # one label column per swept parameter
    cells = table.cells.set_index(["method", "metric"])
    assert cells.loc[("qsattn_global", "fid"), "mean"] == 51.0 and cells.loc[("qsattn_global", "fid"), "n"] == 3
    assert cells.loc[("qsattn_global", "fid"), "published"] == 47.9 and cells.loc[("cut", "fid"), "published"] == 52.6
    assert cells.loc[("cut", "swd"), "mean"] == 28.0
    assert math.isnan(cells.loc[("qsattn_local", "fid"), "published"]), "the paper has no local-attention Table 5 row"
    md = render(table, "md")
    # Same renderer as `bench table`: labels for people, bold only where significantly best (3 seeds here).
    assert md.startswith("**QS-Attn (Hu et al., CVPR 2022) Table 5 — qsattn_queries.horse2zebra.paper**")
    assert "| num_patches | Method | horse2zebra FID↓ | paper | Δ |" in md
    assert "| 64<sup>1</sup> | QS-Attn (Global) | **51.0 ± 1.0** (n=3) | 47.9 | +3.1 |" in md
    assert "| 64<sup>1</sup> | CUT | 56.0 ± 1.0 (n=3) | 52.6 | +3.4 |" in md
    assert "Published: Hu et al., QS-Attn: Query-Selected Attention for Contrastive Learning in I2I Translation, CVPR 2022 (arXiv 2203.08483), Table 5." in md
    latex = render(table, "latex")
    assert r"\bfseries 51.0 \pm 1.0" in latex and r"\toprule" in latex and "S[table-format=" in latex
    toy = spec.with_options(dataset="toy")
    toy_table = study_table(_fake_study(toy, [({"num_patches": 64, "method": "cut"}, [1.0])]), toy)
    assert "| paper |" not in render(toy_table, "md") and not toy_table.options.published


def test_the_test_objective_comes_from_a_plugin_not_from_production_code(tmp_path, monkeypatch):
    """`_quadratic` lived in bench/studies/spec.py and run.py; the runner now knows custom objectives only through
    bench.studies.objectives and $BENCH_STUDY_PLUGINS (conftest points it at tests/study_objectives.py)."""
    import bench.studies.run as run_mod
    import bench.studies.spec as spec_mod
    from bench.studies import objectives

    for module in (run_mod, spec_mod):
        assert not hasattr(module, "_quadratic") and not hasattr(module, "TEST_METHODS")
    assert "quadratic" not in Path(run_mod.__file__).read_text() + Path(spec_mod.__file__).read_text()
    assert parse_spec(base(), "t.yaml").method == "_quadratic"  # registered by the plugin file
    plugin = tmp_path / "my_objectives.py"
    plugin.write_text("from bench.studies.objectives import register_objective\n"
                      "register_objective('_const', lambda seed, overrides, number, on_eval: "
                      "{'last': {'fid': 1.0, 'epoch': 1}, 'best': {'fid': 1.0, 'epoch': 1}})\n")
    monkeypatch.setenv(objectives.PLUGINS_ENV, f"{objectives.os.environ[objectives.PLUGINS_ENV]},{plugin}")
    monkeypatch.setattr(objectives, "OBJECTIVES", dict(objectives.OBJECTIVES))
    assert objectives.get_objective("_const").run(0, {}, 0, lambda *a: None)["last"]["fid"] == 1.0
    with pytest.raises(ConfigError, match=r"'_nothing'.*\$BENCH_STUDY_PLUGINS"):
        objectives.get_objective("_nothing")
    with pytest.raises(ValueError, match="start with '_'"):
        objectives.register_objective("cut", lambda *a: {})
