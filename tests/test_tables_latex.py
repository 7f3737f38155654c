"""Every LaTeX table variant compiles with pdflatex into a two-column article without an overfull box.

Variants: the 2-dataset x 2-metric `bench table`, the same with published numbers, the `bench table --study`
view and the Optuna study table (`bench study table`), a TPE sweep with raw float parameters among them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.tables import TableOptions, build_table, load_runs, render

pytestmark = [
    pytest.mark.skipif(shutil.which("pdflatex") is None,
                       reason="pdflatex not installed (apt-get install texlive-latex-recommended texlive-latex-extra "
                              "texlive-science)"),
    pytest.mark.skipif(shutil.which("kpsewhich") is not None and not subprocess.run(
        ["kpsewhich", "siunitx.sty"], capture_output=True, text=True).stdout.strip(),
        reason="siunitx.sty not installed (Debian: apt-get install texlive-science)"),
]

PREAMBLE = ("\\documentclass[twocolumn]{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{lmodern}\n"
            "\\usepackage{booktabs}\n\\usepackage{siunitx}\n")
FILLER = ("Text of the paper around the table, long enough to fill a few lines of the column so that the float "
          "sits among paragraphs as it does in a paper. ") * 6


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from test_tables import make_runs

    root = tmp_path_factory.mktemp("latex_runs")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    make_runs(uri, root / "images")
    return load_runs(uri)


def _sweep_study():
    """A TPE sweep of CUT's learning rate and loss weights with the raw floats Optuna samples."""
    import optuna
    from optuna.distributions import FloatDistribution

    from bench.studies.spec import find_spec, load_spec

    spec = load_spec(find_spec("cut_lr_tpe")).with_options(seeds=(0, 1, 2))
    study = optuna.create_study()
    dists = {p.name: FloatDistribution(p.low, p.high, log=True) for p in spec.search_space}
    for i, (lr, gan, nce) in enumerate(((0.0002504130762999892, 1.0, 1.0), (0.0011843, 0.3311, 7.2145),
                                        (2.91e-05, 3.9, 0.1234567), (0.000731, 1.52, 2.2))):
        fids = [60.0 + 10 * i + s for s in (0.0, 1.3, 2.1)]
        seeds = {str(s): {"last": {"fid": v, "kid": v / 20, "swd": v / 3, "epoch": 2}} for s, v in enumerate(fids)}
        study.add_trial(optuna.create_trial(params={"lr": lr, "lambda_GAN": gan, "lambda_NCE": nce},
                                            distributions=dists, value=sum(fids) / 3,
                                            user_attrs={"bench:seed_metrics": seeds}))
    return study, spec


def _grid_study():
    import optuna
    from optuna.distributions import CategoricalDistribution

    from bench.studies.spec import find_spec, load_spec

    spec = load_spec(find_spec("qsattn_queries")).with_options(seeds=(0, 1))
    study = optuna.create_study()
    for n in (64, 128, 256, 512):
        for method in ("qsattn_global", "qsattn_local", "cut"):
            params = {"num_patches": n, "method": method}
            dists = {p.name: CategoricalDistribution(list(p.choices)) for p in spec.search_space if p.name in params}
            fids = [40.0 + n / 64 + (3 if method == "cut" else 0) + s for s in (0.0, 0.8)]
            seeds = {str(s): {"last": {"fid": v, "swd": v / 2, "kid": v / 30, "epoch": 2}} for s, v in enumerate(fids)}
            study.add_trial(optuna.create_trial(params=params, distributions=dists, value=sum(fids) / 2,
                                                user_attrs={"bench:seed_metrics": seeds}))
    return study, spec


def _variants(runs) -> dict[str, str]:
    from bench.studies.report import study_table

    out = {
        "table_2x2": render(build_table(TableOptions(metrics=("fid", "swd"), datasets=("horse2zebra", "afhq")),
                                        runs=runs), "latex"),
        "table_published": render(build_table(TableOptions(metrics=("fid", "swd"), published=True,
                                                           datasets=("horse2zebra", "afhq")), runs=runs), "latex"),
        "table_one_column": render(build_table(TableOptions(metrics=("fid",), datasets=("horse2zebra",)),
                                               runs=runs), "latex"),
        "table_study_view": render(build_table(TableOptions(metrics=("fid",), study="qs_queries", published=True,
                                                            select="best"),
                                               runs=runs), "latex"),
    }
    for name, (study, spec) in (("study_sweep", _sweep_study()), ("study_grid", _grid_study())):
        out[name] = render(study_table(study, spec), "latex")
    return out


def _compile(tmp_path: Path, name: str, tex: str) -> str:
    (tmp_path / f"{name}.tex").write_text(tex)
    doc = PREAMBLE + "\\begin{document}\n" + FILLER + f"\n\\input{{{name}}}\n" + FILLER * 3 + "\n\\end{document}\n"
    (tmp_path / f"doc_{name}.tex").write_text(doc)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"doc_{name}.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=180)
    log = (tmp_path / f"doc_{name}.log").read_text(errors="replace")
    assert proc.returncode == 0, f"{name}: pdflatex failed:\n" + "\n".join(
        line for line in log.splitlines() if line.startswith("!"))[:2000]
    return log


def test_every_table_variant_fits_a_two_column_article(runs, tmp_path):
    variants = _variants(runs)
    problems = {}
    for name, tex in variants.items():
        assert "\\resizebox" not in tex and "`" not in tex, name
        log = _compile(tmp_path, name, tex)
        overfull = re.findall(r"^Overfull \\hbox \(([\d.]+)pt too wide\)", log, flags=re.M)
        if overfull:
            problems[name] = overfull
    assert not problems, f"overfull boxes (pt too wide) per variant: {problems}"
    # Wide tables span both columns; the one-metric one-dataset table fits in one.
    assert variants["table_2x2"].startswith("\\begin{table*}")
    assert variants["table_one_column"].startswith("\\begin{table}")


def test_latex_numbers_are_for_people(runs):
    variants = _variants(runs)
    sweep = variants["study_sweep"]
    assert "0.0002504130762999892" not in sweep and "2.5e-4" in sweep and "7.21" in sweep
    assert "{lr}" in sweep and "{lambda\\_GAN}" in sweep  # headers escaped by pandas
    # Numbers in siunitx columns, decimals from the metric catalogue (FID 1, KID×100 2).
    assert re.search(r"S\[table-format=2\.1\(1\.1\)", sweep) and "61.1 \\pm 1.1" in sweep
    assert "KID$\\times$100" in sweep and re.search(r"\d\.\d\d \\pm \d\.\d\d", sweep)
    grid = variants["study_grid"]
    assert "QS-Attn (Global)" in grid and "qsattn\\_global" not in grid
    # Only footnotes that apply: no dagger legend without pruned rows, no internal file names.
    for tex in variants.values():
        assert "shared/" not in tex and ".txt" not in tex and "dagger" not in tex
