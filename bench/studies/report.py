"""Study results as tables and figures, read from the Optuna storage alone (no MLflow needed).

Each finished trial stores its per-seed scores in the user attribute `bench:seed_metrics`; a table row is
one variant (a parameter combination), each cell the mean ± std over seeds. Pruned trials stay visible:
their row shows the last value reported during training, with a footnote saying so. The table is a
`bench.tables.Table`, rendered by the same renderer as `bench table` (Markdown, LaTeX through pandas' Styler, CSV).
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

from bench.metrics import catalog
from bench.studies.spec import StudySpec

log = logging.getLogger(__name__)

SEED_METRICS_ATTR = "bench:seed_metrics"
STATE_ORDER = {"COMPLETE": 0, "PRUNED": 1, "RUNNING": 2, "WAITING": 3, "FAIL": 4}


def row_params(spec: StudySpec, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters that identify a table row (dataset goes to the columns)."""
    return {p.name: params.get(p.name, "—") for p in spec.search_space if p.name != "dataset"}


def summary_frame(study, spec: StudySpec):
    """Long-form numbers: one row per (variant, dataset, metric) with mean, std, n, status and trials."""
    import pandas as pd

    groups: dict[tuple, list] = {}
    for t in study.get_trials(deepcopy=False):
        params = dict(t.system_attrs.get("fixed_params", {}))
        params.update(t.params)
        key = (tuple(sorted(row_params(spec, params).items(), key=lambda kv: kv[0])),
               str(params.get("dataset", spec.dataset)))
        groups.setdefault(key, []).append(t)
    rows = []
    order = {json.dumps(row_params(spec, g), sort_keys=True, default=str): i for i, g in enumerate(_grid_or_empty(spec))}
    metric_names = list(spec.objective.metrics)
    for (items, dataset), trials in groups.items():
        params = dict(items)
        trials.sort(key=lambda t: (STATE_ORDER.get(t.state.name, 9), t.number))
        state = trials[0].state.name
        used = [t for t in trials if t.state.name == state]
        per_metric: dict[str, list[float]] = {}
        if state == "COMPLETE":
            for t in used:
                for seed_scores in (t.user_attrs.get(SEED_METRICS_ATTR) or {}).values():
                    scores = seed_scores.get(spec.objective.select) or {}
                    for m, v in scores.items():
                        if m == "epoch" or not isinstance(v, (int, float)) or v is None:
                            continue
                        per_metric.setdefault(m, []).append(float(v))
        elif state == "PRUNED":
            t = used[0]
            if t.intermediate_values:
                step = max(t.intermediate_values)
                per_metric[spec.objective.metric] = [float(t.intermediate_values[step])]
        for m in per_metric:
            if m not in metric_names:
                metric_names.append(m)
        sort_key = order.get(json.dumps(params, sort_keys=True, default=str), len(order))
        for m in metric_names:
            values = per_metric.get(m, [])
            mean = sum(values) / len(values) if values else math.nan
            std = _std(values)
            rows.append({**params, "dataset": dataset, "metric": m, "mean": mean, "std": std, "n": len(values),
                         "values": values, "status": state.lower(), "trials": ",".join(str(t.number) for t in used),
                         "_order": sort_key})
    columns = [p.name for p in spec.search_space if p.name != "dataset"] + [
        "dataset", "metric", "mean", "std", "n", "values", "status", "trials", "_order"]
    frame = pd.DataFrame(rows, columns=columns)
    if not spec.is_grid and not frame.empty:
        # Sweeps: best first by the objective.
        obj = frame[frame.metric == spec.objective.metric].set_index("trials")["mean"]
        ascending = spec.objective.directions[0] == "minimize"
        rank = {k: i for i, k in enumerate(obj.sort_values(ascending=ascending, na_position="last").index)}
        frame["_order"] = frame["trials"].map(rank)
    return frame.sort_values(["_order", "dataset"], kind="stable").drop(columns="_order").reset_index(drop=True)


def _grid_or_empty(spec: StudySpec) -> list[dict]:
    return spec.grid_points() if spec.is_grid else []


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return math.nan
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


#: What a row that is not a finished trial shows, by trial state (a footnote on its cells).
STATE_NOTES = {
    "pruned": "pruned by the study's pruner: the last value it reported during training, not a final score",
    "running": "trial still running: no score yet",
    "waiting": "trial queued: no score yet",
    "fail": "every trial of this setting failed: no score",
}


def published_row(published, spec: StudySpec, params: dict[str, Any], dataset: str, metric: str):
    """The paper's row for a table row (same method, dataset and metric, its setting within the row's), or None."""
    if published is None or published.empty:
        return None
    method, dataset, overrides = spec.resolve({**params, "dataset": dataset} if spec.param("dataset") else params)
    from bench.published import parse_setting

    ours = parse_setting(overrides)
    rows = published[(published.method == method) & (published.dataset == dataset) & (published.metric == metric)]
    for _, row in rows.iterrows():
        if all(ours.get(k) == v for k, v in parse_setting(row["setting"]).items()):
            return row
    return None


def published_value(published, spec: StudySpec, params: dict[str, Any], dataset: str, metric: str) -> float | None:
    """The paper's number for a table row, or None."""
    row = published_row(published, spec, params, dataset, metric)
    return None if row is None else float(row["value"])


def _load_published(spec: StudySpec):
    if spec.published is None:
        return None
    from bench.errors import BenchError
    from bench.published import load as load_published

    try:
        return load_published(paper=spec.published[0], table=spec.published[1])
    except BenchError as exc:  # published numbers are a bonus, never a reason to fail
        log.info("no published numbers for %s: %s", spec.name, exc)
        return None


def study_title(spec: StudySpec) -> str:
    return f"{spec.paper or spec.name} — {spec.study_name}"


def study_table(study, spec: StudySpec, title: str | None = None):
    """The ablation table as a `bench.tables.Table`: rows = variants (one label column per swept parameter,
    values to 3 significant digits), columns = (dataset,) metric, cells mean ± std over seeds.

    With `published:` in the spec, each metric gets the paper's number of that row beside it (and the
    difference) wherever the paper has one. Render it with `bench.tables.render(table, "md" | "latex" | "csv")`.
    """
    import pandas as pd

    from bench.formatting import human
    from bench.published import in_bench_unit
    from bench.published import method_label
    from bench.tables import CELL_COLUMNS, Table, TableOptions, _Notes
    from bench.tables import published_note

    frame = summary_frame(study, spec)
    published = _load_published(spec)
    names = [p.name for p in spec.search_space if p.name != "dataset"]
    notes = _Notes()
    records, sources = [], {}
    for r in frame.to_dict("records"):
        params = {k: r[k] for k in names}
        method = str(params.get("method", spec.method))
        row = "; ".join(f"{k}={human(v)}" for k, v in params.items()) or spec.name
        marks = [notes.mark(STATE_NOTES[r["status"]])] if r["status"] in STATE_NOTES else []
        paper = published_row(published, spec, params, r["dataset"], r["metric"])
        value = in_bench_unit(paper) if paper is not None else None
        if paper is not None and value is not None:
            sources[(paper["paper"], str(paper["table"]))] = paper["source"]
        complete = r["status"] == "complete"
        records.append({
            "row": row, "method": method, "preset": spec.preset, "setting": row, "kind": "study",
            # The spec's direction, unnamed: resolving its name would import the dataset registry (and torch).
            "dataset": r["dataset"], "direction": "default", "metric": r["metric"],
            "mean": r["mean"], "std": r["std"], "n": int(r["n"]) if complete else 0,
            "values": list(r["values"]) if complete else [], "seeds": list(spec.seeds), "epochs": [],
            "n_pruned": int(r["status"] == "pruned"), "published": math.nan if value is None else float(value),
            "published_paper": "" if value is None else paper["paper"],
            "published_table": "" if value is None else str(paper["table"]),
            "diff": r["mean"] - value if value is not None and not math.isnan(r["mean"]) else math.nan,
            "marks": marks, "labels": tuple(method_label(str(v)) if k == "method" else human(v)
                                            for k, v in params.items()) or (spec.name,)})
    cells = pd.DataFrame(records, columns=CELL_COLUMNS)
    source_mark = {key: notes.mark(published_note(key[0], key[1], src)) for key, src in sorted(sources.items())}
    cells["published_mark"] = [source_mark.get((p, t), 0) for p, t in zip(cells["published_paper"],
                                                                          cells["published_table"])]
    cells["published_marks"] = [[] for _ in range(len(cells))]
    metrics = tuple(dict.fromkeys(cells["metric"])) or tuple(spec.objective.metrics)
    options = TableOptions(metrics=metrics, select=spec.objective.select, published=bool(sources),
                           study=spec.study_name)
    return Table(cells=cells, options=options, footnotes=notes.texts, title=title or study_title(spec),
                 label_names=tuple("Method" if n == "method" else n for n in names) or ("Study",))


# ------------------------------------------------------------------------------------------ plots
def _numeric(values) -> bool:
    import numbers

    return len(values) > 0 and all(isinstance(v, numbers.Real) and not isinstance(v, (bool,)) and
                                   type(v).__name__ != "bool_" for v in values)


def plot_metric_vs_param(study, spec: StudySpec, metric: str | None = None):
    """Mean ± std (over seeds) of `metric` against the swept parameter, one line per group (grid studies)."""
    import matplotlib.pyplot as plt

    from bench.formatting import human
    from bench.plots import value_axis
    from bench.published import method_label

    metric = metric or spec.objective.metric
    frame = summary_frame(study, spec)
    frame = frame[(frame.metric == metric) & frame["mean"].notna()]
    names = [p.name for p in spec.search_space if p.name != "dataset"]
    x = spec.plot_x or next((n for n in names if _numeric(frame[n].unique())), names[0] if names else None)
    fig, ax = plt.subplots(figsize=(6, 4))
    if x is None or frame.empty:
        ax.text(0.5, 0.5, "no finished trials yet", ha="center", va="center", transform=ax.transAxes)
        return fig
    group_keys = [spec.plot_group] if spec.plot_group else [n for n in names if n != x]
    if frame["dataset"].nunique() > 1:
        group_keys.append("dataset")
    numeric_x = _numeric(frame[x].unique())
    categories = list(dict.fromkeys(frame[x])) if not numeric_x else []
    grouped = frame.groupby(group_keys, sort=False, dropna=False) if group_keys else [((), frame)]
    pruned_label = "pruned (last reported value)"

    def shown(key: str, value) -> str:
        return method_label(str(value)) if key == "method" else f"{key}={human(value)}"

    for key, part in grouped:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(shown(k, v) for k, v in zip(group_keys, key)) or catalog.get(metric).label
        part = part.sort_values(x) if numeric_x else part
        xs = part[x].tolist() if numeric_x else [categories.index(v) for v in part[x]]
        pruned = (part["status"] == "pruned").tolist()
        keep = [not p for p in pruned]
        if any(keep):
            ax.errorbar([v for v, k in zip(xs, keep) if k], part["mean"][keep].tolist(),
                        yerr=part["std"].fillna(0.0)[keep].tolist(), marker="o", capsize=3, label=label,
                        linestyle="-" if numeric_x else "none")
        if any(pruned):
            ax.scatter([v for v, p in zip(xs, pruned) if p], part["mean"][pruned].tolist(), marker="x", color="k",
                       zorder=3, label=pruned_label)
            pruned_label = None
    if numeric_x:
        param = spec.param(x)
        value_axis(ax, frame[x].unique(), log=True if param is not None and getattr(param, "log", False) else None)
    else:
        ax.set_xticks(range(len(categories)))
        ax.set_xticklabels([method_label(str(c)) if x == "method" else human(c) for c in categories])
    m = catalog.get(metric)
    ax.set_xlabel(x)
    ax.set_ylabel(f"{m.label}{m.arrow} ({spec.objective.select}, mean ± std over {len(spec.seeds)} "
                  f"seed{'s' if len(spec.seeds) > 1 else ''})")
    ax.set_title(spec.paper or spec.study_name, fontsize=9)
    if len(ax.get_legend_handles_labels()[0]) > 1:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_slices(study, spec: StudySpec):
    """A sweep's objective against each numeric parameter (Optuna's plot_slice: one panel per parameter, log
    axes for log-sampled ones, points coloured by trial number), labelled for people."""
    import optuna
    from matplotlib.ticker import FuncFormatter
    from optuna.exceptions import ExperimentalWarning

    from bench.formatting import human

    target = (lambda t: t.values[0]) if spec.multi_objective else None  # noqa: E731 - one scalar target
    names = [p.name for p in spec.search_space if p.name != "dataset"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        axes = optuna.visualization.matplotlib.plot_slice(study, params=names or None, target=target,
                                                          target_name=objective_label(spec))
    from matplotlib.ticker import LogLocator, NullFormatter

    flat = list(getattr(axes, "flat", [axes]))
    for ax in flat:
        if ax.get_xscale() == "log":  # decades only, labelled 1e-4 / 0.1 / 10: no crowded minor labels
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0), numticks=8))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: human(float(v))))
    fig = flat[0].figure
    fig.set_size_inches(max(4.5, 3.0 * len(flat) + 1.0), 3.4)  # room for Optuna's trial colour bar
    if fig._suptitle is not None:
        fig._suptitle.set_text(f"{spec.paper or spec.study_name}: {objective_label(spec)} per parameter")
        fig._suptitle.set_fontsize(9)
    return fig


def objective_label(spec: StudySpec) -> str:
    """'FID↓ (last, mean of 3 seeds)'."""
    m = catalog.get(spec.objective.metric)
    n = len(spec.seeds)
    return f"{m.label}{m.arrow} ({spec.objective.select}, mean of {n} seed{'s' if n > 1 else ''})"


def save_plots(study, spec: StudySpec, out_dir: Path) -> dict[str, Path | str]:
    """Write the study's figures as PNG; returns name -> path, or name -> reason when a plot is impossible."""
    import matplotlib.pyplot as plt
    import optuna
    from optuna.exceptions import ExperimentalWarning
    from optuna.trial import TrialState

    out_dir.mkdir(parents=True, exist_ok=True)
    done: dict[str, Path | str] = {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    path = out_dir / f"{spec.objective.metric}_vs_param.png"
    if spec.is_grid or not complete:
        done["metric_vs_param"] = _save(plot_metric_vs_param(study, spec), path)
    else:  # a sampled sweep: one slice per parameter, log axes where the parameter is log-sampled
        try:
            done["metric_vs_param"] = _save(plot_slices(study, spec), path)
        except (ValueError, RuntimeError) as exc:
            log.info("slice plot skipped: %s", exc)
            done["metric_vs_param"] = _save(plot_metric_vs_param(study, spec), path)
        finally:
            plt.close("all")
    vis = optuna.visualization.matplotlib
    target = None
    target_name = objective_label(spec)
    if spec.multi_objective:
        target = lambda t: t.values[0]  # noqa: E731 - Optuna's plots take one scalar target
    jobs = {
        "history": lambda: vis.plot_optimization_history(study, target=target, target_name=target_name),
        # Seeded (and lighter than the default 64 trees) so the figure is the same every time it is drawn.
        "importances": lambda: vis.plot_param_importances(
            study, target=target, target_name=target_name,
            evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=32, seed=0)),
        "intermediate": lambda: vis.plot_intermediate_values(study),
    }
    for name, make in jobs.items():
        if name == "importances" and (len(complete) < 2 or not spec.search_space):
            done[name] = "needs at least 2 finished trials"
            continue
        if name == "intermediate" and (spec.multi_objective or not any(t.intermediate_values for t in study.trials)):
            done[name] = "no intermediate values reported"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                ax = make()
            ax_fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            ax_fig.set_size_inches(7, 4.5)
            ax_fig.tight_layout()
            done[name] = _save(ax_fig, out_dir / f"{name}.png")
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            log.info("plot %s skipped: %s", name, exc)
            done[name] = str(exc)
        finally:
            plt.close("all")
    return done


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=120, bbox_inches="tight")  # axis labels never cut at the edge
    plt.close(fig)
    return path
