"""Sweep figures for people: log axes for log-sampled parameters, tick labels and legends to 3 digits."""

from __future__ import annotations

import re

import matplotlib
import pytest

matplotlib.use("Agg")

from test_tables_latex import _grid_study, _sweep_study  # noqa: E402

from bench.studies.report import plot_metric_vs_param, plot_slices, save_plots  # noqa: E402

RAW_FLOAT = re.compile(r"\d\.\d{4,}")


def _labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_xticklabels() if t.get_text()]


def test_sweep_is_a_slice_plot_with_log_axes_for_log_sampled_parameters(tmp_path):
    study, spec = _sweep_study()
    fig = plot_slices(study, spec)
    panels = {ax.get_xlabel(): ax for ax in fig.axes if ax.get_xlabel() in ("lr", "lambda_GAN", "lambda_NCE")}
    assert set(panels) == {"lr", "lambda_GAN", "lambda_NCE"}
    assert all(ax.get_xscale() == "log" for ax in panels.values())  # every one of them is log-sampled
    fig.canvas.draw()
    for ax in panels.values():
        assert _labels(ax) and not any(RAW_FLOAT.search(t) for t in _labels(ax)), _labels(ax)
    assert "1e-4" in _labels(panels["lr"])
    written = save_plots(study, spec, tmp_path)
    assert written["metric_vs_param"].stat().st_size > 1000


def test_grid_plot_labels_methods_and_values_for_people():
    study, spec = _grid_study()
    fig = plot_metric_vs_param(study, spec)
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.get_xscale() == "log" and _labels(ax) == ["64", "128", "256", "512"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["QS-Attn (Global)", "QS-Attn (Local)", "CUT"]
    assert ax.get_ylabel().startswith("FID↓ (last, mean ± std over 2 seeds)")


def test_value_axis_formats_ticks_to_three_digits():
    import matplotlib.pyplot as plt

    from bench.plots import value_axis

    fig, ax = plt.subplots()
    values = [0.0002504130762999892, 0.0011843, 2.91e-05]
    ax.plot(values, [1, 2, 3], "o")
    value_axis(ax, values)
    fig.canvas.draw()
    assert ax.get_xscale() == "log" and _labels(ax) == ["2.91e-5", "2.5e-4", "1.18e-3"]
    plt.close(fig)
    with pytest.raises(AssertionError):
        assert RAW_FLOAT.search("2.5e-4")
