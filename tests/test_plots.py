"""bench.plots and the `bench table` / `bench plot` commands, on runs tracked in a real MLflow (sqlite)."""

from __future__ import annotations

import pytest
from PIL import Image

from bench.errors import DataError, UsageError
from bench.plots import (
    COLUMN_WIDTH_IN,
    FONT_PT,
    PAGE_WIDTH_IN,
    curves_frame,
    grid_from_runs,
    make_figures,
    plot_curves,
    plot_sweep,
    sweep_frame,
)
from bench.tables import load_runs
from bench.tracking import make_client

from test_tables import make_runs  # the same schema-following runs as the table tests


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracked_plots")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    make_runs(uri, root / "images")
    return uri, load_runs(uri), make_client(uri)


def test_curves_mean_over_seeds(tracked):
    uri, runs, client = tracked
    frame = curves_frame(runs, client, "fid")
    assert set(frame["dataset"]) == {"horse2zebra", "afhq"}  # toy runs have no eval history; study runs excluded
    cut = frame[(frame["method"] == "cut") & (frame["dataset"] == "horse2zebra")]
    assert sorted(cut["epoch"].unique()) == [1, 2, 3, 4] and cut["seed"].nunique() == 3
    fig = plot_curves(frame, "fid", "horse2zebra", "horse2zebra")
    ax = fig.axes[0]
    assert fig.get_size_inches()[0] == pytest.approx(COLUMN_WIDTH_IN)
    assert ax.xaxis.label.get_size() == FONT_PT
    # Series in the papers' method order, as the tables' rows.
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["CycleGAN", "CUT", "QS-Attn (Global)"]
    assert ax.get_legend().get_title().get_text() == "mean ± std over 3 seeds (band: ±1 std)"
    y = ax.lines[1].get_ydata()  # CUT: mean of the three seeds at each epoch
    assert y[0] == pytest.approx(cut[cut["epoch"] == 1]["value"].mean())


def test_curves_with_many_methods_keep_the_axes_and_tell_series_apart():
    import pandas as pd

    methods = [f"m{i:02d}" for i in range(21)]
    frame = pd.DataFrame([{"method": m, "preset": "smoke", "dataset": "toy", "direction": "d", "seed": s,
                           "epoch": e, "value": 100.0 + i + s + e}
                          for i, m in enumerate(methods) for s in (0, 1) for e in (1, 2)])
    fig = plot_curves(frame, "fid", "toy", "d")
    ax = fig.axes[0]
    assert fig.get_size_inches()[0] == pytest.approx(PAGE_WIDTH_IN)
    assert ax.get_position().height > 0.5  # the legend sits below the axes instead of squeezing them
    assert len(ax.get_legend().get_texts()) == 21
    styles = {(line.get_color(), line.get_marker(), line.get_linestyle()) for line in ax.lines}
    assert len(styles) == 21


def test_sweep_with_error_bars(tracked):
    uri, runs, client = tracked
    frame = sweep_frame(runs, "qs_queries", "fid")
    row = frame[frame["setting"] == "num_patches=128"].iloc[0]
    assert row["mean"] == pytest.approx(40.5) and row["std"] == pytest.approx(0.5 ** 0.5) and row["n"] == 2
    fig, param = plot_sweep(frame, "fid", baseline={("qsattn_global", "horse2zebra"): (42.0, 0.0)})
    assert param == "num_patches"
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["64", "128", "256"]
    with pytest.raises(UsageError, match="not swept"):
        plot_sweep(frame, "fid", param="lambda_NCE")
    with pytest.raises(UsageError, match="no finished runs of study"):
        sweep_frame(runs, "nope", "fid")


def test_qualitative_grid_from_artifacts(tracked, tmp_path):
    uri, runs, client = tracked
    fig = grid_from_runs(runs, client, "horse2zebra", "horse2zebra", n_images=2, workdir=tmp_path)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["Input", "CycleGAN", "CUT", "QS-Attn (Global)"]
    assert fig._suptitle.get_text() == "horse2zebra: last checkpoint (epoch 4), seed 0"  # which weights, which seed
    assert len(fig.axes) == 2 * 4
    # The CUT column shows CUT's output for the same test image as the input column (green in the fixture).
    cut_img = fig.axes[2].get_images()[0].get_array()
    assert tuple(cut_img[16, 0][:3]) == (40, 160, 40)
    with pytest.raises(DataError, match="test/outputs"):
        grid_from_runs(runs, client, "afhq", "cat2dog", workdir=tmp_path)


def test_make_figures_png_and_pdf_at_column_width(tracked, tmp_path):
    uri, runs, client = tracked
    written = make_figures(tmp_path / "figs", tracking_uri=uri, study="qs_queries", published=True)
    names = sorted(p.name for p in written)
    assert "curve_fid_horse2zebra_horse2zebra.png" in names and "curve_fid_afhq_cat2dog.pdf" in names
    assert "sweep_qs_queries_num_patches_fid.pdf" in names and "grid_horse2zebra_horse2zebra.png" in names
    for path in written:
        assert path.stat().st_size > 1000
        if path.suffix == ".png":
            with Image.open(path) as img:
                assert 2.9 <= img.width / 300 <= 3.4, (path.name, img.width)  # 300 dpi, one paper column
        else:
            assert path.read_bytes()[:5] == b"%PDF-"


def test_cli_table_and_plot(tracked, tmp_path):
    from bench.cli import main

    uri = tracked[0]
    out = tmp_path / "table.md"
    assert main(["table", "--metric", "fid,swd", "--published", "--dataset", "horse2zebra", "--select", "best",
                 "--tracking-uri", uri, "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("| Method | horse2zebra FID↓ | paper | Δ | horse2zebra SWD↓ | paper | Δ |")
    # --select best: every reproduced cell carries the "selected on the test set" footnote (1); the row's label
    # points at its published source.
    assert "| QS-Attn (Global)<sup>" in text and "| **42.0 ± 1.0** (n=3)<sup>1</sup> | 41.1 | +0.9 |" in text
    tex = tmp_path / "study.tex"
    assert main(["table", "--study", "qs_queries", "--format", "latex", "--tracking-uri", uri, "--out", str(tex)]) == 0
    assert "\\toprule" in tex.read_text()
    assert main(["plot", "--kind", "curves", "--dataset", "afhq", "--tracking-uri", uri, "--out",
                 str(tmp_path / "f"), "--format", "png"]) == 0
    assert [p.name for p in (tmp_path / "f").iterdir()] == ["curve_fid_afhq_cat2dog.png"]
    assert main(["table", "--metric", "fdi", "--tracking-uri", uri]) == 2


def test_a_grid_of_many_methods_wraps_into_bands_with_input_and_ground_truth(tmp_path):
    from bench.plots import MIN_CELL_IN, qualitative_grid

    def png(path, value):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (value, 0, 0)).save(path)
        return path

    stems = ["a", "b"]
    inputs = {s: png(tmp_path / "in" / f"{s}.png", 10) for s in stems}
    truth = {s: png(tmp_path / "gt" / f"{s}.png", 20) for s in stems}
    images = {f"m{i:02d}": {s: png(tmp_path / f"m{i:02d}" / f"{s}.png", 30 + i) for s in stems} for i in range(20)}
    fig = qualitative_grid(images, inputs, stems, title="toy", targets=truth)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    n_bands = titles.count("Input")
    assert n_bands >= 2 and titles.count("Ground truth") == n_bands  # every band reads Input | methods | truth
    assert sum(t.startswith("m") for t in titles) == 20
    width, height = fig.get_size_inches()
    assert width <= PAGE_WIDTH_IN + 1e-6
    cell = min(ax.get_position().width for ax in fig.axes) * width
    assert cell >= MIN_CELL_IN - 1e-6  # not 20 columns of 0.3 in
    # The ground-truth column shows the ground truth.
    gt_axes = [ax for ax in fig.axes if ax.get_title() == "Ground truth"]
    assert tuple(gt_axes[0].get_images()[0].get_array()[0, 0][:3]) == (20, 0, 0)


def test_plot_says_what_it_could_not_draw_and_draws_another_eval_metric(tmp_path):
    from bench.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for seed in (0, 1):
        t = Tracker.start(tracking_uri=uri, experiment="toy", run_name=f"cut/seed{seed}", kind="benchmark",
                          tags={"bench.method": "cut", "bench.dataset": "toy", "bench.seed": seed,
                                "bench.preset": "smoke", "bench.unavailable.fid": "no FID Inception weights found"})
        for epoch in (1, 2):
            t.log_metrics({"eval/swd": 300.0 + epoch + seed}, step=epoch)
        t.log_metrics({"last/swd": 301.0, "last/epoch": 2, "best/swd": 301.0, "best/epoch": 2}, step=2)
        t.finish()
    not_drawn: list[str] = []
    written = make_figures(tmp_path / "figs", tracking_uri=uri, kinds=("curves", "grid"), formats=("png",),
                           not_drawn=not_drawn)
    assert [p.name for p in written] == ["curve_swd_toy_circles2squares.png"]
    assert any(line.startswith("FID curves: FID was unavailable in these runs (no FID Inception weights found); "
                               "drew SWD curves instead") for line in not_drawn)
    assert any(line.startswith("qualitative grid of toy: ") and "test/outputs" in line for line in not_drawn)
