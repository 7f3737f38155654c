"""bench.tables: runs tracked in a real MLflow (sqlite) -> paper-style tables in Markdown, LaTeX and CSV."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest

from bench.errors import UsageError
from bench.metrics.catalog import higher_is_better, parse_metrics
from bench.published import load as load_published
from bench.tables import TableOptions, build_table, latex_escape, load_runs, render
from bench.tracking import Tracker

BASE_FID = {"cyclegan": 75.0, "cut": 45.0, "qsattn_global": 41.0}
TEST_COUNT = {"horse2zebra": 120, "afhq": 500}


def _fingerprint(n: int, size: int = 256, protocol: str = "legacy_pytorch") -> str:
    return json.dumps({"metric": "fid", "n_fake": n, "image_size": size, "protocol": protocol})


def _png(path: Path, color: tuple[int, int, int], seed: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (32, 32), color)
    for i in range(0, 32, 4):  # a little structure so the grid is not flat colour
        img.paste(tuple(255 - c for c in color), (i, (i * 7 + seed * 5) % 28, i + 2, (i * 7 + seed * 5) % 28 + 4))
    img.save(path)


def make_runs(uri: str, workdir: Path) -> dict:
    """Runs following the tracking schema: 3 methods x 3 seeds x 2 datasets, a failed run, smoke runs on toy,
    and a study over num_patches (2 seeds each) with one pruned setting. Returns {(method, dataset, seed): id}."""
    rng = random.Random(0)
    ids = {}
    colors = {"cyclegan": (200, 40, 40), "cut": (40, 160, 40), "qsattn_global": (40, 40, 200)}
    for dataset, offset in (("horse2zebra", 0.0), ("afhq", 30.0)):
        for method, base in BASE_FID.items():
            for seed in (0, 1, 2):
                tags = {"bench.method": method, "bench.dataset": dataset, "bench.seed": seed, "bench.preset": "paper",
                        "bench.direction": "default", "bench.protocol.fid": _fingerprint(TEST_COUNT[dataset])}
                t = Tracker.start(tracking_uri=uri, experiment=dataset, run_name=f"{method}/seed{seed}", tags=tags,
                                  params={"method.num_patches": 256, "train.n_epochs": 4}, kind="benchmark")
                for epoch in range(1, 5):
                    t.log_metrics({"eval/fid": base + offset + 40.0 / epoch + rng.random()}, step=epoch)
                best = base + offset + seed
                t.log_metrics({"best/fid": best, "best/swd": 30.0 + seed, "best/epoch": 3}, step=3)
                t.log_metrics({"last/fid": best + 5.0, "last/swd": 31.0 + seed, "last/epoch": 4}, step=4)
                if seed == 0 and dataset == "horse2zebra":
                    for i in range(3):
                        _png(workdir / method / "inputs" / f"n0{i}.png", (128, 128, 60 * i), i)
                        _png(workdir / method / "outputs" / f"n0{i}.png", colors[method], i)
                    t.log_artifacts(workdir / method / "inputs", "test/inputs")
                    t.log_artifacts(workdir / method / "outputs", "test/outputs")
                t.finish()
                ids[(method, dataset, seed)] = t.run_id
    failed = Tracker.start(tracking_uri=uri, experiment="horse2zebra", run_name="cut/seed3", kind="benchmark",
                           tags={"bench.method": "cut", "bench.dataset": "horse2zebra", "bench.seed": 3,
                                 "bench.preset": "paper"})
    failed.log_metrics({"best/fid": 1.0}, step=1)  # a crashed run's partial number must never enter a table
    failed.finish("FAILED", error="RuntimeError: boom")
    for seed in (0, 1):
        t = Tracker.start(tracking_uri=uri, experiment="toy", run_name=f"cut/seed{seed}", kind="benchmark",
                          tags={"bench.method": "cut", "bench.dataset": "toy", "bench.seed": seed,
                                "bench.preset": "smoke", "bench.protocol.fid": _fingerprint(8, size=32),
                                "bench.unavailable.miou": "segmentation weights absent"})
        t.log_metrics({"best/fid": 300.0 + seed, "best/epoch": 2}, step=2)
        t.finish()
    parent = Tracker.start(tracking_uri=uri, experiment="horse2zebra", run_name="study/qs_queries",
                           tags={"bench.study": "qs_queries", "bench.kind": "study"})
    for n, fid in ((64, 47.0), (128, 40.0), (256, 41.0)):
        for seed in (0, 1):
            t = Tracker.start(tracking_uri=uri, experiment="horse2zebra", parent_run_id=parent.run_id, kind="trial",
                              run_name=f"qsattn_global/seed{seed}/q{n}",
                              tags={"bench.method": "qsattn_global", "bench.dataset": "horse2zebra",
                                    "bench.seed": seed, "bench.preset": "paper", "bench.study": "qs_queries",
                                    "bench.trial": n, "bench.swept": json.dumps({"method.num_patches": n}),
                                    "bench.protocol.fid": _fingerprint(120)})
            t.log_metrics({"best/fid": fid + seed, "best/swd": 30.0, "best/epoch": 4}, step=4)
            t.finish()
    pruned = Tracker.start(tracking_uri=uri, experiment="horse2zebra", parent_run_id=parent.run_id, kind="trial",
                           run_name="qsattn_global/seed0/q512",
                           tags={"bench.method": "qsattn_global", "bench.dataset": "horse2zebra", "bench.seed": 0,
                                 "bench.preset": "paper", "bench.study": "qs_queries", "bench.trial": 512,
                                 "bench.swept": json.dumps({"method.num_patches": 512})})
    pruned.log_metrics({"eval/fid": 90.0}, step=1)
    pruned.finish("KILLED", bench_status="pruned")
    parent.finish()
    return ids


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """(tracking URI, run ids) of the runs above, built once per test module."""
    root = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return uri, make_runs(uri, root / "images")


@pytest.fixture(scope="module")
def runs(tracked):
    return load_runs(tracked[0])


def _cell(table, row_method, dataset, metric="fid", kind=None):
    c = table.cells
    sel = c[(c["method"] == row_method) & (c["dataset"] == dataset) & (c["metric"] == metric)]
    if kind:
        sel = sel[sel["kind"] == kind]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def test_load_runs_reads_the_schema(runs):
    assert set(runs["status"]) == {"finished", "failed", "pruned"}
    assert len(runs) == 18 + 1 + 2 + 6 + 1  # study parent has no bench.seed: skipped
    cut0 = runs[(runs["method"] == "cut") & (runs["dataset"] == "afhq") & (runs["seed"] == 0)].iloc[0]
    assert cut0["direction"] == "cat2dog"  # 'default' normalized through the dataset registry
    assert cut0["metrics"]["best/fid"] == 75.0
    assert cut0["protocols"]["fid"]["n_fake"] == 500
    assert set(runs[runs["study"] == "qs_queries"]["setting"]) == {"num_patches=64", "num_patches=128",
                                                                  "num_patches=256", "num_patches=512"}


def test_mean_std_over_seeds_and_failed_excluded(runs):
    table = build_table(TableOptions(metrics=("fid", "swd"), select="best"), runs=runs)
    cut = _cell(table, "cut", "horse2zebra")
    assert cut["n"] == 3 and cut["mean"] == pytest.approx(46.0) and cut["std"] == pytest.approx(1.0)
    assert cut["seeds"] == [0, 1, 2]  # the failed seed 3 (best/fid 1.0) is not there
    last = build_table(TableOptions(metrics=("fid",)), runs=runs)  # the official protocol's last epoch by default
    assert _cell(last, "cut", "horse2zebra")["mean"] == pytest.approx(51.0)
    assert not (table.cells["kind"] == "study").any()  # study runs stay out of the main table
    md = render(table, "md")
    assert "| QS-Attn (Global) [paper] | **42.0 ± 1.0** (n=3)" in md  # lowest FID bold
    assert "46.0 ± 1.0 (n=3)" in md


def test_best_per_column_follows_metric_direction():
    assert not higher_is_better("fid") and not higher_is_better("kid") and not higher_is_better("swd_16")
    assert higher_is_better("psnr") and higher_is_better("miou") and higher_is_better("lpips_diversity")
    with pytest.raises(UsageError, match="did you mean 'fid'"):
        parse_metrics("fdi")
    assert parse_metrics("fid, KID") == ["fid", "kid"]


def test_published_beside_reproduced_with_difference(runs):
    table = build_table(TableOptions(metrics=("fid",), published=True, datasets=("horse2zebra", "afhq"),
                                     select="best"), runs=runs)
    q = _cell(table, "qsattn_global", "horse2zebra")
    assert q["published"] == 41.1 and q["published_paper"] == "qsattn2022"
    assert q["diff"] == pytest.approx(42.0 - 41.1)
    munit = _cell(table, "munit", "afhq", kind="published")  # a paper's row the harness did not run
    assert munit["published"] == 104.4 and munit["n"] == 0
    md = render(table, "md")
    assert "| paper | Δ |" in md and "+0.9" in md
    # Sources are cited like a paper cites them, never by the internal file the numbers were copied from.
    source = "Published: Hu et al., QS-Attn: Query-Selected Attention for Contrastive Learning in I2I Translation, CVPR 2022 (arXiv 2203.08483), Table 1."
    assert source in table.footnotes
    assert not any("shared/" in t or ".txt" in t for t in table.footnotes)
    # The row's label points at its published numbers' source, so the number columns stay plain numbers.
    mark = table.footnotes.index(source) + 1
    assert q["published_mark"] == mark
    assert re.search(rf"\| QS-Attn \(Global\)<sup>{mark}</sup> \| \*\*42\.0 ± 1\.0\*\* \(n=3\)(<sup>\d+</sup>)? \| 41\.1 \|",
                     md), md
    # CycleGAN horse->zebra differs between the CUT-paper copy (77.2) and DCLGAN's table (66.8): both named.
    assert "other published values" in md


def test_protocol_footnotes(runs):
    table = build_table(TableOptions(metrics=("fid",), datasets=("toy", "horse2zebra"), select="best"), runs=runs)
    toy = _cell(table, "cut", "toy")
    note = table.footnotes[toy["marks"][0] - 1]
    assert "32px images (paper: 256)" in note and "smoke preset" in note and "8 test images" in note
    assert "`" not in note  # backticks render as quotes in LaTeX
    # best is selected on the test set: always said so, since the official test scripts evaluate the last epoch
    note = table.footnotes[_cell(table, "cut", "horse2zebra")["marks"][0] - 1]
    assert "best epoch, selected on the test set" in note and "official test scripts evaluate the last" in note
    assert "selected on the test set" in table.title
    last = build_table(TableOptions(metrics=("fid",), datasets=("horse2zebra",)), runs=runs)
    assert not _cell(last, "cut", "horse2zebra")["marks"]  # the official protocol: no footnote
    assert last.options.select == "last" and "last epoch" in last.title


def test_study_table_groups_by_swept_params_with_baseline(runs):
    table = build_table(TableOptions(metrics=("fid",), study="qs_queries", published=True, select="best"), runs=runs)
    rows = list(dict.fromkeys(table.cells["row"]))
    assert rows == ["num_patches=64", "num_patches=128", "num_patches=256", "num_patches=512",
                    "QS-Attn (Global) (baseline)"]
    assert table.label_names == ("num_patches",)  # one label column per swept parameter
    assert list(dict.fromkeys(table.cells["labels"])) == [("64",), ("128",), ("256",), ("512",),
                                                          ("QS-Attn (Global) (baseline)",)]
    c = table.cells.set_index("row")
    assert c.loc["num_patches=128", "mean"] == pytest.approx(40.5) and c.loc["num_patches=128", "n"] == 2
    assert c.loc["num_patches=64", "published"] == 47.9  # QS-Attn Table 5
    assert c.loc["num_patches=512", "n_pruned"] == 1 and c.loc["num_patches=512", "n"] == 0
    assert set(table.cells["dataset"]) == {"horse2zebra"}  # baseline limited to the study's datasets
    md = render(table, "md")
    assert re.search(r"\| 128<sup>\d+</sup> \| \*\*40\.5 ± 0\.7\*\* \(n=2\)(<sup>[\d,]+</sup>)? \|", md), md
    assert "pruned" in md
    with pytest.raises(UsageError, match="no finished runs of study"):
        build_table(TableOptions(study="qs_querys"), runs=runs)


def test_csv_is_long_form(runs):
    import io

    import pandas as pd

    table = build_table(TableOptions(metrics=("fid", "swd"), published=True, select="best"), runs=runs)
    df = pd.read_csv(io.StringIO(render(table, "csv")))
    row = df[(df["method"] == "cut") & (df["dataset"] == "horse2zebra") & (df["metric"] == "swd")].iloc[0]
    assert row["mean"] == pytest.approx(31.0) and row["n"] == 3 and row["published"] == 31.5


def _column_specs(text: str) -> list[str]:
    """The columns of a tabular spec `{@{}lS[...]!{...}S[...]@{}}`: 'l', 'c', 'r' or 'S[...]' each."""
    def group(i: int, open_: str, close: str) -> int:  # index after the balanced group starting at i
        depth = 0
        for j in range(i, len(text)):
            depth += {open_: 1, close: -1}.get(text[j], 0)
            if depth == 0:
                return j + 1
        raise AssertionError(text)

    end, i, out = group(0, "{", "}"), 1, []
    while i < end - 1:
        ch = text[i]
        if ch in "@!":
            i = group(i + 1, "{", "}")
        elif ch == "S":
            j = group(i + 1, "[", "]") if text[i + 1] == "[" else i + 1
            out.append(text[i:j])
            i = j
        else:
            out.append(ch)
            i += 1
    return out


def test_latex_structure(runs):
    tex = render(build_table(TableOptions(metrics=("fid",), study="qs_queries", published=True, select="best"),
                             runs=runs), "latex")
    assert tex.count("\\toprule") == tex.count("\\midrule") == tex.count("\\bottomrule") == 1
    assert tex.index("\\caption{") < tex.index("\\begin{tabular}")  # caption above, as papers print it
    assert "\\bfseries 40.5 \\pm 0.7" in tex and "{num\\_patches}" in tex and "qs\\_queries" in tex
    assert "\\resizebox" not in tex and "`" not in tex
    columns = _column_specs(tex.split("\\begin{tabular}", 1)[1])
    # label | ours, paper, Δ (siunitx S) | Seeds (the baseline has 3 seeds, the study rows 2)
    assert columns[0] == "l" and columns[-1] == "c" and all(c.startswith("S[table-format=") for c in columns[1:-1])
    assert "{Seeds}" in tex
    assert "uncertainty-mode=separate" in columns[1]  # ± aligned by siunitx
    rows = [line for line in tex.splitlines() if line.endswith("\\\\") and "&" in line]
    assert len(rows) == 3 + 5  # dataset, metric and ours/paper/Δ headers, 5 table rows
    for line in rows:  # every row fills exactly the declared columns (multicolumn spans counted)
        spans = [int(w) for w in re.findall(r"\\multicolumn\{(\d+)\}", line)]
        assert line.count("&") + 1 + sum(w - 1 for w in spans) == len(columns), line
    assert latex_escape("a_b & 5% ± →") == "a\\_b \\& 5\\% $\\pm$ $\\rightarrow$"


def test_bold_marks_only_values_tied_with_the_best(runs):
    import pandas as pd

    from bench.tables import BOLD_RULE, bold_cells

    main = build_table(TableOptions(metrics=("fid", "swd"), datasets=("horse2zebra",)), runs=runs)
    bold = {(row, m) for row, _, _, m in bold_cells(main.cells, [("horse2zebra", "horse2zebra", "fid"),
                                                                ("horse2zebra", "horse2zebra", "swd")])}
    # FID 42 ± 1 vs 46 ± 1 over 3 seeds: significantly better (Welch p < 0.01), bold alone.
    assert {row for row, m in bold if m == "fid"} == {"QS-Attn (Global)"}
    # SWD 30/31/32 for every method: all tied, all bold.
    assert {row for row, m in bold if m == "swd"} == {"CycleGAN", "CUT", "QS-Attn (Global)"}
    assert BOLD_RULE in render(main, "md")
    study = build_table(TableOptions(metrics=("fid",), study="qs_queries", select="best"), runs=runs)
    bold = {row for row, *_ in bold_cells(study.cells, [("horse2zebra", "horse2zebra", "fid")])}
    # 40.5 ± 0.7 (best) vs 41.5 ± 0.7 and 42.0 ± 1.0: not distinguishable with 2-3 seeds; 47.5 ± 0.7 is worse.
    assert bold == {"num_patches=128", "num_patches=256", "QS-Attn (Global) (baseline)"}

    def cells(values):
        return pd.DataFrame([{"row": r, "dataset": "d", "direction": "d", "metric": "fid", "kind": "method",
                              "mean": sum(v) / len(v), "n": len(v), "values": v} for r, v in values.items()])

    assert bold_cells(cells({"a": [1.0], "b": [5.0, 6.0]}), [("d", "d", "fid")]) == set(), \
        "a single seed's best proves nothing"
    assert bold_cells(cells({"a": [1.0, 1.0], "b": [1.0, 1.0]}), [("d", "d", "fid")]) == {
        ("a", "d", "d", "fid"), ("b", "d", "d", "fid")}
    assert bold_cells(cells({"a": [1.0, 1.0], "b": [2.0, 2.0]}), [("d", "d", "fid")]) == {("a", "d", "d", "fid")}


def test_no_runs_renders_a_message(tmp_path):
    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    table = build_table(TableOptions(metrics=("fid",)), tracking_uri=uri)
    assert "No finished runs" in render(table, "md")


def test_table_reads_published_without_runs_in_other_units():
    pub = load_published("pixel_acc", paper="dclgan2021")
    assert set(pub["unit"]) == {"fraction"}


def test_an_unavailable_metric_says_why_its_cell_is_empty(runs):
    table = build_table(TableOptions(metrics=("fid", "miou"), datasets=("toy",)), runs=runs)
    cell = _cell(table, "cut", "toy", metric="miou")
    assert math.isnan(cell["mean"]) and cell["marks"]
    note = table.footnotes[cell["marks"][0] - 1]
    assert note.endswith("not computed: segmentation weights absent")
    assert f"—<sup>{cell['marks'][0]}</sup>" in render(table, "md")


def test_the_official_protocol_is_the_reference_of_published_comparisons():
    """Last epoch and one fake per test input (what the official test.py leaves to pytorch-fid) raise no note."""
    from bench.tables import PAPER_PROTOCOL, protocol_differences

    assert PAPER_PROTOCOL["select"] == "last" and PAPER_PROTOCOL["test_set"] == "per_input"
    official = {"n_fake": 120, "image_size": 256, "protocol": "legacy_pytorch", "test_set": "per_input"}
    assert protocol_differences(official, "fid", "horse2zebra", "horse2zebra", "paper", "last") == []
    wrapped = {**official, "n_fake": 140, "test_set": "wraparound"}
    notes = protocol_differences(wrapped, "fid", "horse2zebra", "horse2zebra", "paper", "last")
    assert any(n.startswith("test set wraparound") for n in notes)
    assert "140 test images scored (paper: all 120)" in notes
    best = protocol_differences(official, "fid", "horse2zebra", "horse2zebra", "paper", "best")
    assert best == ["best epoch, selected on the test set (the official test scripts evaluate the last epoch)"]


def test_bench_table_defaults_to_the_last_epoch():
    from bench.cli import build_parser

    args = build_parser().parse_args(["table", "--published"])
    assert args.select == "last"
    assert TableOptions().select == "last"


def test_method_labels_live_on_the_registry_lines(monkeypatch):
    """bench/tables.py kept its own label table; labels now come from methods/registry.py (and, for methods bench
    does not train, from bench/published.py)."""
    import dataclasses

    import bench.tables as tables_mod
    import methods.registry as registry
    from bench.published import PUBLISHED_ONLY_LABELS, method_label, method_order

    assert not hasattr(tables_mod, "METHOD_LABELS")
    for name, entry in registry.METHODS.items():
        assert entry.label and method_label(name) == entry.label == registry.label(name)
    assert method_label("qsattn_global") == "QS-Attn (Global)" and method_label("drit") == "DRIT"
    assert method_label("unknown_thing") == "unknown_thing"
    assert not set(PUBLISHED_ONLY_LABELS) & set(registry.METHODS)
    order = sorted(["drit", "munit", "cyclegan", "zzz"], key=method_order)
    assert order == ["cyclegan", "munit", "drit", "zzz"]
    renamed = {**registry.METHODS, "cut": dataclasses.replace(registry.METHODS["cut"], label="CUT*")}
    monkeypatch.setattr(registry, "METHODS", renamed)
    assert tables_mod.method_label("cut") == "CUT*"
