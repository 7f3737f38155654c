"""Paper figures from tracked runs: metric vs epoch, metric vs swept value, qualitative image grids.

Every figure is sized for one paper column (3.3 in wide, 8 pt text) and saved as PNG and PDF. The runs come
from `bench.tables.load_runs`; curves read the `eval/<metric>` history, grids the runs' `test/` artifacts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import textwrap
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from bench.errors import DataError, UsageError
from bench.formatting import human
from bench.metrics import catalog
from bench.published import parse_setting
from bench.tables import dataset_label, finished_runs, method_label, method_order

log = logging.getLogger(__name__)

COLUMN_WIDTH_IN = 3.3
PAGE_WIDTH_IN = 6.9
FONT_PT = 8
DPI = 300
FORMATS = ("png", "pdf")


@contextlib.contextmanager
def paper_style():
    """Matplotlib settings for column-width figures: 8 pt text, thin lines, no chart junk, 300 dpi PNGs."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rc = {"font.size": FONT_PT, "axes.titlesize": FONT_PT, "axes.labelsize": FONT_PT, "xtick.labelsize": FONT_PT - 1,
          "ytick.labelsize": FONT_PT - 1, "legend.fontsize": FONT_PT - 1, "lines.linewidth": 1.2,
          "lines.markersize": 3.5, "axes.linewidth": 0.6, "axes.spines.top": False, "axes.spines.right": False,
          "legend.frameon": False, "pdf.fonttype": 42, "ps.fonttype": 42}
    with plt.rc_context(rc):
        yield plt


def save(fig, stem: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write `fig` as <stem>.png / <stem>.pdf (folders created) and close it; returns the paths."""
    import matplotlib.pyplot as plt

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        if fmt not in FORMATS:
            raise UsageError(f"figure format {fmt!r}: use {', '.join(FORMATS)}")
        path = stem.with_suffix(f".{fmt}")
        with paper_style():  # rc settings read at save time (PDF font type) must hold here too
            fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.02)
        paths.append(path)
    plt.close(fig)
    return paths


#: Series beyond this many get a page-wide figure with the legend below the axes (a paper's figure*).
INLINE_LEGEND_MAX = 5
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
_LINESTYLES = ("-", "--", ":", "-.")


def _width_for(n_series: int) -> float:
    return COLUMN_WIDTH_IN if n_series <= INLINE_LEGEND_MAX else PAGE_WIDTH_IN


def _series_style(i: int) -> dict:
    """Colour from the default 10-colour cycle; marker and line style change with it so no two series match."""
    return {"color": f"C{i % 10}", "marker": _MARKERS[i % len(_MARKERS)],
            "linestyle": _LINESTYLES[(i // 10) % len(_LINESTYLES)]}


def _legend(ax, title: str | None = None) -> None:
    """Inside the axes for a few entries; below them in up to four columns for many (the axes keep their size)."""
    n_entries = len(ax.get_legend_handles_labels()[1])
    if n_entries <= INLINE_LEGEND_MAX:
        legend = ax.legend(loc="best", title=title)
    else:
        # Called after tight_layout, so the axes keep their size; savefig(bbox_inches="tight") takes it in.
        legend = ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=min(4, -(-n_entries // 6)),
                           borderaxespad=0.0, columnspacing=1.0, handlelength=2.2, title=title)
    if title:
        legend.get_title().set_fontsize(FONT_PT - 1)


def _axis_label(metric: str) -> str:
    m = catalog.get(metric)
    return f"{m.label} ({'higher' if m.higher_is_better else 'lower'} is better)"


# ------------------------------------------------------------------------------------------ metric vs epoch
def metric_histories(client, run_ids: Iterable[str], key: str) -> dict[str, list[tuple[int, float]]]:
    """{run_id: [(step, value), ...]} of one metric, sorted by step (last value per step wins)."""
    out = {}
    for run_id in run_ids:
        points: dict[int, float] = {}
        for m in sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp)):
            points[int(m.step)] = float(m.value)
        if points:
            out[run_id] = sorted(points.items())
    return out


def curves_frame(runs, client, metric: str):
    """Long-form eval history: method, dataset, direction, seed, epoch, value (finished runs, no studies)."""
    import pandas as pd

    done = finished_runs(runs)
    done = done[done["study"] == ""]
    from bench.tracking import metric_key

    hist = metric_histories(client, done["run_id"], metric_key(metric, "eval"))
    if metric_key(metric) != metric:  # runs logged before keys carried their unit
        missing = [r for r in done["run_id"] if r not in hist]
        hist.update(metric_histories(client, missing, f"eval/{metric}"))
    rows = []
    for _, run in done.iterrows():
        for epoch, value in hist.get(run["run_id"], []):
            rows.append({"method": run["method"], "preset": run["preset"], "dataset": run["dataset"],
                         "direction": run["direction"], "seed": run["seed"], "epoch": epoch, "value": value})
    return pd.DataFrame(rows, columns=["method", "preset", "dataset", "direction", "seed", "epoch", "value"])


def plot_curves(frame, metric: str, dataset: str, direction: str):
    """One dataset: mean over seeds of `eval/<metric>` per epoch per method, with a ±1 std band; the legend says
    over how many seeds."""
    from matplotlib.ticker import MaxNLocator

    sub = frame[(frame["dataset"] == dataset) & (frame["direction"] == direction)]
    groups = sorted(sub.groupby(["method", "preset"], sort=True), key=lambda kv: (method_order(kv[0][0]), kv[0][1]))
    seeds = [int(g["seed"].nunique()) for _, g in groups]
    same_n = len(set(seeds)) == 1
    bands = any(n > 1 for n in seeds) and len(groups) <= INLINE_LEGEND_MAX  # bands of many series hide each other
    with paper_style() as plt:
        fig, ax = plt.subplots(figsize=(_width_for(len(groups)), 2.2))
        multi_preset = sub["preset"].nunique() > 1
        for i, ((method, preset), g) in enumerate(groups):
            stats = g.groupby("epoch")["value"].agg(["mean", "std", "count"]).reset_index()
            n = int(g["seed"].nunique())
            label = method_label(method) + (f" [{preset}]" if multi_preset else "") + ("" if same_n else f" (n={n})")
            line, = ax.plot(stats["epoch"], stats["mean"], label=label, **_series_style(i))
            if n > 1 and bands:
                std = stats["std"].fillna(0.0)
                ax.fill_between(stats["epoch"], stats["mean"] - std, stats["mean"] + std, color=line.get_color(),
                                alpha=0.2, linewidth=0)
        epochs = sorted(sub["epoch"].unique())
        if len(epochs) <= 10:  # every evaluated epoch as a tick (one epoch would get fractional ticks)
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(_axis_label(metric))
        ax.set_title(f"{dataset_label(dataset, direction)}: held-out {catalog.get(metric).label} during "
                     "training")
        ax.grid(True, linewidth=0.3, alpha=0.5)
        fig.tight_layout()
        _legend(ax, title=curves_legend_title(seeds, bands))
    return fig


def curves_legend_title(seeds: Sequence[int], bands: bool) -> str:
    """'mean ± std over 3 seeds' (the shaded band is ±1 std), or what stands in for it."""
    if not seeds or max(seeds) <= 1:
        return "one seed per method (no spread)"
    over = f"over {seeds[0]} seeds" if len(set(seeds)) == 1 else "over n seeds"
    return f"mean ± std {over} (band: ±1 std)" if bands else f"mean {over} (±std bands left out: many series)"


# ------------------------------------------------------------------------------------------ metric vs swept value
def value_axis(ax, values: Sequence[float], *, log: bool | None = None, axis: str = "x") -> None:
    """An axis of hyperparameter values: log scale for log-sampled or widely spread positive values (base 2
    when every value is a power of two, as for patch counts), ticks at the values when there are few, every
    label to 3 significant digits (`human`)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    values = sorted({float(v) for v in values})
    if not values:
        return
    spread = values[0] > 0 and values[-1] / values[0] >= 8
    if log is None:
        log = spread and len(values) > 2
    set_scale = ax.set_xscale if axis == "x" else ax.set_yscale
    target = ax.xaxis if axis == "x" else ax.yaxis
    if log and values[0] > 0:
        powers_of_two = all(v.is_integer() and int(v) & (int(v) - 1) == 0 for v in values)
        set_scale("log", base=2 if powers_of_two else 10)
    if len(values) <= 8:
        (ax.set_xticks if axis == "x" else ax.set_yticks)(values)
        target.set_minor_formatter(NullFormatter())
    target.set_major_formatter(FuncFormatter(lambda v, _pos: human(float(v))))


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def sweep_frame(runs, study: str, metric: str, select: str = "best"):
    """Per (method, dataset, setting): swept values, mean, std and n of `<select>/<metric>` over seeds."""
    import pandas as pd

    done = finished_runs(runs)
    done = done[done["study"] == study]
    if done.empty:
        raise UsageError(f"no finished runs of study {study!r}; check --study (tag bench.study)")
    key = f"{select}/{metric}"
    rows = []
    for (method, dataset, direction, setting), g in done.groupby(["method", "dataset", "direction", "setting"]):
        vals = [float(m[key]) for m in g["metrics"] if key in m]
        if not vals:
            continue
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        rows.append({"method": method, "dataset": dataset, "direction": direction, "setting": setting,
                     "params": parse_setting(setting), "mean": mean, "std": std, "n": len(vals)})
    return pd.DataFrame(rows, columns=["method", "dataset", "direction", "setting", "params", "mean", "std", "n"])


def plot_sweep(frame, metric: str, param: str | None = None, baseline: Mapping[tuple[str, str], tuple[float, float]]
               | None = None, published=None, select: str = "best"):
    """Metric (mean ± std over seeds) against one swept parameter; baselines dashed, paper values hollow."""
    params = sorted({k for p in frame["params"] for k in p})
    if param is None:
        if len(params) != 1:
            raise UsageError(f"the study swept {', '.join(params) or 'nothing'}; choose one with --param")
        param = params[0]
    param = param[len("method."):] if param.startswith("method.") else param
    if param not in params:
        raise UsageError(f"--param {param!r} was not swept in this study (swept: {', '.join(params)})")
    n_series = frame.groupby(["method", "dataset", "direction"]).ngroups
    with paper_style() as plt:
        fig, ax = plt.subplots(figsize=(_width_for(n_series), 2.2))
        values = [p.get(param) for p in frame["params"]]
        numeric = all(_as_number(v) is not None for v in values)
        categories = sorted(set(values), key=lambda v: (_as_number(v) is None, _as_number(v) or 0, v))
        position = {v: (_as_number(v) if numeric else i) for i, v in enumerate(categories)}
        for i, ((method, dataset, direction), g) in enumerate(frame.groupby(["method", "dataset", "direction"])):
            g = g.assign(x=[position[p.get(param)] for p in g["params"]]).sort_values("x")
            label = f"{method_label(method)}, {dataset_label(dataset, direction)}"
            bars = ax.errorbar(g["x"], g["mean"], yerr=g["std"], capsize=2, label=label, **_series_style(i))
            color = bars[0].get_color()
            if baseline and (method, dataset) in baseline:
                mean, _ = baseline[(method, dataset)]
                ax.axhline(mean, color=color, linestyle="--", linewidth=0.8, label=f"{method_label(method)} default")
            if published is not None and len(published):
                pub = published[(published["method"] == method) & (published["dataset"] == dataset)
                                & (published["direction"] == direction) & (published["metric"] == metric)]
                xs, ys = [], []
                for _, row in pub.iterrows():
                    v = parse_setting(row["setting"]).get(param)
                    if v in position and len(parse_setting(row["setting"])) == 1:
                        xs.append(position[v])
                        ys.append(float(row["value"]))
                if xs:
                    ax.plot(xs, ys, linestyle="none", marker="s", markerfacecolor="none", color=color,
                            label=f"{method_label(method)} (paper)")
        if numeric:
            value_axis(ax, list(position.values()))
            ax.minorticks_off()
        else:
            ax.set_xticks(list(position.values()))
            ax.set_xticklabels([human(c) for c in categories])
        ax.set_xlabel(param)
        ax.set_ylabel(f"{select} {_axis_label(metric)}")
        ax.grid(True, linewidth=0.3, alpha=0.5)
        fig.tight_layout()
        ns = sorted({int(n) for n in frame["n"]}) if len(frame) else []
        _legend(ax, title=(f"mean ± std over {ns[0]} seeds" if len(ns) == 1 and ns[0] > 1 else
                           "mean ± std over n seeds" if ns and max(ns) > 1 else None))
    return fig, param


# ------------------------------------------------------------------------------------------ qualitative grid
@contextlib.contextmanager
def _no_progress_bar():
    """MLflow draws a tqdm bar per artifact download; a figure script does not want dozens of them."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    old = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


#: Test-image artifact folders of a run (runner.py logs them; `targets` = ground truth of aligned datasets).
TEST_ARTIFACTS = ("inputs", "outputs", "targets")


def fetch_test_images(client, run_id: str, dest: Path, subs: Sequence[str] = ("inputs", "outputs")
                      ) -> tuple[dict[str, Path], ...]:
    """Download a run's `test/<sub>` artifacts; returns {stem: path} for each of `subs` (empty when absent)."""
    found = []
    for sub in subs:
        target = dest / run_id
        target.mkdir(parents=True, exist_ok=True)
        try:
            with _no_progress_bar():
                local = Path(client.download_artifacts(run_id, f"test/{sub}", str(target)))
        except Exception as exc:  # MLflow raises several types for a missing artifact folder
            log.debug("run %s has no test/%s artifacts: %s", run_id, sub, exc)
            local = target / "missing"
        found.append({p.stem: p for p in sorted(local.glob("*.png"))} if local.is_dir() else {})
    return tuple(found)


#: Smallest image cell of a qualitative grid (a page-wide grid holds PAGE_WIDTH_IN / this many columns); wider
#: rows wrap into bands, each repeating the input (and ground-truth) column.
MIN_CELL_IN = 0.6
MAX_CELL_IN = 0.9


def grid_columns_per_band(n_fixed: int, n_methods: int) -> int:
    """Methods per band: at most what keeps every cell MIN_CELL_IN wide on a page, spread evenly over the bands."""
    most = max(1, int(PAGE_WIDTH_IN // MIN_CELL_IN) - n_fixed)
    n_bands = max(1, math.ceil(n_methods / most))
    return max(1, math.ceil(n_methods / n_bands))


def qualitative_grid(images: Mapping[str, Mapping[str, Path]], inputs: Mapping[str, Path], stems: Sequence[str],
                     title: str = "", targets: Mapping[str, Path] | None = None,
                     column_notes: Mapping[str, str] | None = None):
    """Rows = test images, columns = Input | each method's output | Ground truth (aligned data); many methods
    wrap into bands of rows, each band starting with the input column (the papers' qualitative figures).

    `column_notes` adds a second line to a method's header (e.g. its seed when the methods differ in it).
    """
    from PIL import Image

    methods = list(images)
    fixed = 1 + (1 if targets else 0)
    per_band = grid_columns_per_band(fixed, len(methods))
    bands = [methods[i:i + per_band] for i in range(0, len(methods), per_band)] or [[]]
    n_cols = fixed + (per_band if len(bands) > 1 else len(methods))
    width_in = COLUMN_WIDTH_IN if n_cols <= 5 else PAGE_WIDTH_IN
    gap = 0.03
    # Wrapped bands keep the smallest cell, so the figure stays within a page's height.
    cell = MIN_CELL_IN if len(bands) > 1 else min((width_in - gap * (n_cols - 1)) / n_cols, MAX_CELL_IN)
    title_pt = FONT_PT - 1 if cell >= 0.75 else FONT_PT - 2
    chars = max(6, int(cell * 72 / (0.5 * title_pt)))  # characters of one header line at that size
    notes = dict(column_notes or {})

    def header(name: str) -> str:
        label = "Input" if name == "\0input" else "Ground truth" if name == "\0truth" else method_label(name)
        text = "\n".join(textwrap.wrap(label, chars))
        return text + (f"\n{notes[name]}" if notes.get(name) else "")

    band_columns = [["\0input", *band] + (["\0truth"] if targets else []) for band in bands]
    head_lines = max(header(c).count("\n") + 1 for cols in band_columns for c in cols)
    head = 0.06 + head_lines * title_pt * 1.25 / 72
    title_h = 0.16 if title else 0.0
    band_h = head + len(stems) * (cell + gap)
    width = n_cols * cell + (n_cols - 1) * gap
    height = title_h + len(bands) * band_h
    with paper_style() as plt:
        fig = plt.figure(figsize=(width, height))
        for b, cols in enumerate(band_columns):
            top = height - title_h - b * band_h - head  # inches from the bottom to the band's first image top
            for r, stem in enumerate(stems):
                for c, name in enumerate(cols):
                    x, y = c * (cell + gap), top - (r + 1) * (cell + gap) + gap
                    ax = fig.add_axes((x / width, y / height, cell / width, cell / height))
                    path = (inputs[stem] if name == "\0input" else targets[stem] if name == "\0truth"
                            else images[name][stem])
                    with Image.open(path) as img:
                        ax.imshow(img.convert("RGB"), interpolation="nearest")
                    ax.set_xticks([])
                    ax.set_yticks([])
                    for spine in ax.spines.values():
                        spine.set_visible(False)
                    if r == 0:
                        ax.set_title(header(name), fontsize=title_pt, pad=2)
        if title:
            fig.suptitle(title, fontsize=FONT_PT, y=1.0 - 0.02 / height, va="top")
    return fig


def _seed_epoch_text(runs_used: Mapping[str, Mapping]) -> tuple[str, dict[str, str]]:
    """What the grid shows: '<checkpoint>, seed S' when every column shares them, else a note per column."""
    seeds = {m: int(r["seed"]) for m, r in runs_used.items()}
    epochs = {m: r["metrics"].get("last/epoch") for m, r in runs_used.items()}
    shared_seed = len(set(seeds.values())) == 1
    shared_epoch = len(set(epochs.values())) == 1
    epoch_text = (lambda e: f"last checkpoint (epoch {int(e)})" if e is not None else "last checkpoint")
    parts = [epoch_text(next(iter(epochs.values())))] if shared_epoch else ["last checkpoints"]
    if shared_seed:
        parts.append(f"seed {next(iter(seeds.values()))}")
    notes = {}
    for m in runs_used:
        bits = ([] if shared_seed else [f"seed {seeds[m]}"]) + (
            [] if shared_epoch or epochs[m] is None else [f"ep {int(epochs[m])}"])
        if bits:
            notes[m] = ", ".join(bits)
    return ", ".join(parts), notes


def grid_from_runs(runs, client, dataset: str, direction: str, methods: Sequence[str] | None = None,
                   n_images: int = 4, workdir: Path | None = None):
    """The qualitative grid of one dataset: for each method its lowest-seed finished run's test outputs (the
    last checkpoint's translations), the inputs, and the ground truth where the dataset has it."""
    done = finished_runs(runs)
    done = done[(done["study"] == "") & (done["dataset"] == dataset) & (done["direction"] == direction)]
    if "kind" in done:
        done = done[done["kind"] != "import"]
    if methods:
        done = done[done["method"].isin(methods)]
    if done.empty:
        raise DataError(f"no finished runs on {dataset} ({direction}) to draw a qualitative grid from")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="bench_grid_"))
    inputs: dict[str, Path] = {}
    targets: dict[str, Path] = {}
    outputs: dict[str, dict[str, Path]] = {}
    used = {}
    for method in sorted(done["method"].unique(), key=method_order):
        run = done[done["method"] == method].sort_values(["preset", "seed"]).iloc[0]
        ins, outs, truth = fetch_test_images(client, run["run_id"], workdir, TEST_ARTIFACTS)
        if not outs:
            log.info("%s (run %s) logged no test/outputs images; left out of the grid", method, run["run_id"])
            continue
        outputs[method] = outs
        used[method] = run
        for stem, path in ins.items():
            inputs.setdefault(stem, path)
        for stem, path in truth.items():
            targets.setdefault(stem, path)
    if not outputs:
        raise DataError(f"no run on {dataset} logged test/outputs artifacts; nothing to draw")
    common = sorted(set(inputs).intersection(*[set(o) for o in outputs.values()]))
    if not common:
        raise DataError(f"the runs on {dataset} share no test image (by file stem) with inputs; cannot align a grid")
    stems = common[:n_images]
    with_truth = targets if all(s in targets for s in stems) else None
    shown, notes = _seed_epoch_text(used)
    return qualitative_grid(outputs, inputs, stems, title=f"{dataset_label(dataset, direction)}: {shown}",
                            targets=with_truth, column_notes=notes)


# ------------------------------------------------------------------------------------------ all figures
def _why_no_history(runs, metric: str) -> str:
    """Why runs have no `eval/<metric>` curve: the reason a run recorded for the metric being n/a, if any."""
    for reasons in runs.get("unavailable", []):
        if isinstance(reasons, Mapping) and reasons.get(metric):
            return f"{catalog.get(metric).label} was unavailable in these runs ({reasons[metric]})"
    return f"no run logged eval/{metric} (the in-training evaluation scores train.select_metric)"


def make_figures(out_dir: str | Path, *, metric: str = "fid", tracking_uri: str | None = None,
                 datasets: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                 study: str | None = None, param: str | None = None, select: str = "best",
                 kinds: Sequence[str] = ("curves", "sweep", "grid"), n_images: int = 4, published: bool = False,
                 formats: Sequence[str] = FORMATS, runs=None, client=None,
                 not_drawn: list[str] | None = None) -> list[Path]:
    """Draw every requested figure kind into `out_dir`; returns the written files.

    `not_drawn` (a list) receives one line per figure that could not be drawn, with the reason.
    """
    from bench.published import load as load_published
    from bench.tables import load_runs
    from bench.tracking import make_client

    skipped = not_drawn if not_drawn is not None else []
    catalog.get(metric)  # validates the name
    client = client or make_client(tracking_uri)
    if runs is None:
        runs = load_runs(datasets=datasets, methods=methods, client=client)
    if datasets:
        runs = runs[runs["dataset"].isin(datasets)]
    if methods:
        runs = runs[runs["method"].isin(methods)]
    if runs.empty:
        raise DataError("no tracked runs match; run `bench run ...` first or check --tracking-uri/--dataset")
    out_dir = Path(out_dir)
    written: list[Path] = []
    if "curves" in kinds:
        frame, drawn_metric = curves_frame(runs, client, metric), metric
        if frame.empty:
            why = _why_no_history(runs, metric)
            # Another metric scored during training (e.g. SWD when FID had no weights) still shows the curves.
            for other in catalog.names(eval_time=True):
                if other != metric:
                    alt = curves_frame(runs, client, other)
                    if not alt.empty:
                        frame, drawn_metric = alt, other
                        skipped.append(f"{catalog.get(metric).label} curves: {why}; drew {catalog.get(other).label} "
                                       f"curves instead (--metric {other})")
                        break
            else:
                skipped.append(f"{catalog.get(metric).label} curves: {why}")
        for (dataset, direction), _ in frame.groupby(["dataset", "direction"], sort=True):
            fig = plot_curves(frame, drawn_metric, dataset, direction)
            written += save(fig, out_dir / f"curve_{drawn_metric}_{dataset}_{direction}", formats)
    if "sweep" in kinds and study:
        frame = sweep_frame(runs, study, metric, select)
        done = finished_runs(runs)
        base = done[(done["study"] == "") & done["method"].isin(set(frame["method"]))]
        baseline = {}
        for (method, dataset), g in base.groupby(["method", "dataset"]):
            vals = [float(m[f"{select}/{metric}"]) for m in g["metrics"] if f"{select}/{metric}" in m]
            if vals:
                baseline[(method, dataset)] = (sum(vals) / len(vals), 0.0)
        pub = load_published(metric) if published else None
        fig, swept = plot_sweep(frame, metric, param, baseline, pub, select)
        written += save(fig, out_dir / f"sweep_{study}_{swept}_{metric}", formats)
    elif "sweep" in kinds and tuple(kinds) != ("curves", "sweep", "grid"):
        skipped.append("sweep: needs --study NAME")
    if "grid" in kinds:
        done = finished_runs(runs)
        done = done[done["study"] == ""]
        if done.empty:
            skipped.append("qualitative grid: no finished runs outside studies")
        for (dataset, direction), _ in done.groupby(["dataset", "direction"], sort=True):
            try:
                with tempfile.TemporaryDirectory(prefix="bench_grid_") as tmp:
                    fig = grid_from_runs(runs, client, dataset, direction, methods, n_images, Path(tmp))
                    written += save(fig, out_dir / f"grid_{dataset}_{direction}", formats)
            except DataError as exc:
                skipped.append(f"qualitative grid of {dataset}: {exc}")
    for line in skipped if not_drawn is None else []:
        log.warning("not drawn: %s", line)
    return written


__all__ = ["COLUMN_WIDTH_IN", "FONT_PT", "PAGE_WIDTH_IN", "curves_frame", "fetch_test_images", "grid_from_runs", "make_figures",
           "metric_histories", "paper_style", "plot_curves", "plot_sweep", "qualitative_grid", "save", "sweep_frame",
           "value_axis"]
