"""Study results as tables and figures, read from the Optuna storage alone (no MLflow needed).

Each finished trial stores its per-seed scores in the user attribute `bench:seed_metrics`; a table row is
one variant (a parameter combination), each cell the mean ± std over seeds. Pruned trials stay visible:
their row shows the last value reported during training, marked †.
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
PRUNED_MARK = "†"


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
                         "status": state.lower(), "trials": ",".join(str(t.number) for t in used),
                         "_order": sort_key})
    columns = [p.name for p in spec.search_space if p.name != "dataset"] + [
        "dataset", "metric", "mean", "std", "n", "status", "trials", "_order"]
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


def format_cell(mean: float, std: float, status: str, digits: int = 2) -> str:
    """'41.10 ± 0.52', '41.10' for one seed, '55.3†' for a pruned trial, '—' when missing."""
    if mean is None or math.isnan(mean):
        return "—"
    text = f"{mean:.{digits}f}"
    if std is not None and not math.isnan(std):
        text += f" ± {std:.{digits}f}"
    if status == "pruned":
        text += PRUNED_MARK
    return text


def published_value(published, spec: StudySpec, params: dict[str, Any], dataset: str, metric: str) -> float | None:
    """The paper's number for a table row: same method, dataset and metric, its setting within the row's."""
    if published is None or published.empty:
        return None
    method, dataset, overrides = spec.resolve({**params, "dataset": dataset} if spec.param("dataset") else params)
    from bench.published import parse_setting

    ours = parse_setting(overrides)
    rows = published[(published.method == method) & (published.dataset == dataset) & (published.metric == metric)]
    for setting, value in zip(rows.setting, rows.value):
        if all(ours.get(k) == v for k, v in parse_setting(setting).items()):
            return float(value)
    return None


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


def study_table(study, spec: StudySpec, digits: int = 2):
    """The ablation table: rows = variants, columns = (dataset,) metric, cells mean ± std over seeds.

    With `published:` in the spec, each metric gets a "(paper)" column with the published number of that row.
    """
    import pandas as pd

    frame = summary_frame(study, spec)
    published = _load_published(spec)
    row_keys = [p.name for p in spec.search_space if p.name != "dataset"]
    multi_dataset = frame["dataset"].nunique() > 1 if not frame.empty else False
    records: dict[tuple, dict[str, Any]] = {}
    for r in frame.to_dict("records"):
        key = tuple(r[k] for k in row_keys)
        rec = records.setdefault(key, {k: r[k] for k in row_keys})
        col = f"{r['dataset']} {r['metric']}" if multi_dataset else r["metric"]
        rec[col] = format_cell(r["mean"], r["std"], r["status"], digits)
        paper = published_value(published, spec, {k: r[k] for k in row_keys}, r["dataset"], r["metric"])
        rec[f"{col} (paper)"] = "—" if paper is None else f"{paper:.{digits}f}"
        rec["_best_" + col] = r["mean"] if r["status"] == "complete" else math.nan
        if r["status"] == "complete":
            rec["seeds"] = max(rec.get("seeds", 0), int(r["n"]))
        statuses = rec.setdefault("_status", set())
        statuses.add(r["status"])
    table = pd.DataFrame(list(records.values()))
    if table.empty:
        return table
    # Paper columns beside their metric, and only where the paper has numbers for these rows (not on toy).
    for col in [c for c in table.columns if c.endswith(" (paper)")]:
        values = table.pop(col)
        if (values != "—").any():
            table.insert(table.columns.get_loc(col[: -len(" (paper)")]) + 1, col, values)
    table["status"] = table.pop("_status").map(lambda s: "/".join(sorted(s)))
    seeds = table.pop("seeds") if "seeds" in table else 0
    table.insert(len(table.columns) - 1, "seeds", pd.Series(seeds, index=table.index).fillna(0).astype(int))
    # Bold the best complete value per metric column.
    for col in [c for c in table.columns if c.startswith("_best_")]:
        metric = col[len("_best_"):].split(" ")[-1]
        values = pd.to_numeric(table[col], errors="coerce")
        if values.notna().any():
            maximize = metric in _maximized(spec)
            best = values.max() if maximize else values.min()
            mask = values == best
            table.loc[mask, col[len("_best_"):]] = table.loc[mask, col[len("_best_"):]].map(lambda s: f"**{s}**")
        table = table.drop(columns=col)
    return table


def _maximized(spec: StudySpec) -> set[str]:
    out = {m for m, d in zip(spec.objective.metrics, spec.objective.directions) if d == "maximize"}
    return out | {m.name for m in catalog.CATALOG.values() if m.higher_is_better}


def render(table, fmt: str, *, title: str = "") -> str:
    """Markdown, LaTeX (booktabs) or CSV text of a study table."""
    if fmt == "csv":
        return table.replace(r"\*\*", "", regex=True).to_csv(index=False)
    cols = [str(c) for c in table.columns]
    rows = [[str(v) for v in row] for row in table.itertuples(index=False)]
    note = f"{PRUNED_MARK} pruned: last value reported during training. Cells: mean ± std over seeds."
    if fmt == "md":
        lines = [f"**{title}**", ""] if title else []
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "|".join("---" for _ in cols) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines += ["", note]
        return "\n".join(lines) + "\n"
    if fmt == "latex":
        def tex(s: str) -> str:
            s = s.replace("\\", r"\textbackslash{}")
            for ch in "&%$#_{}":
                s = s.replace(ch, "\\" + ch)
            s = s.replace("±", r"$\pm$").replace(PRUNED_MARK, r"$^\dagger$")
            if s.startswith("**") and s.endswith("**"):
                s = r"\textbf{" + s[2:-2] + "}"
            return s

        lines = [r"\begin{table}[t]", r"\centering"]
        if title:
            lines.append(r"\caption{" + tex(title) + "}")
        lines += [r"\begin{tabular}{" + "l" * len(cols) + "}", r"\toprule", " & ".join(map(tex, cols)) + r" \\",
                  r"\midrule"]
        lines += [" & ".join(tex(v) for v in r) + r" \\" for r in rows]
        lines += [r"\bottomrule", r"\end{tabular}", r"\\[2pt]{\footnotesize " + tex(note) + "}", r"\end{table}"]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown table format {fmt!r}")


# ------------------------------------------------------------------------------------------ plots
def _numeric(values) -> bool:
    import numbers

    return len(values) > 0 and all(isinstance(v, numbers.Real) and not isinstance(v, (bool,)) and
                                   type(v).__name__ != "bool_" for v in values)


def plot_metric_vs_param(study, spec: StudySpec, metric: str | None = None):
    """Mean ± std (over seeds) of `metric` against the swept parameter, one line per group."""
    import matplotlib.pyplot as plt

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
    for key, part in grouped:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{k}={v}" for k, v in zip(group_keys, key)) or metric
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
        values = sorted(frame[x].unique())
        if len(values) > 2 and values[0] > 0 and values[-1] / values[0] >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks(values)
        ax.set_xticklabels([str(v) for v in values])
    else:
        ax.set_xticks(range(len(categories)))
        ax.set_xticklabels([str(c) for c in categories])
    ax.set_xlabel(x)
    ax.set_ylabel(f"{metric} ({spec.objective.select}, mean ± std over {len(spec.seeds)} seed(s))")
    ax.set_title(spec.paper or spec.study_name, fontsize=9)
    if len(ax.get_legend_handles_labels()[0]) > 1:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def save_plots(study, spec: StudySpec, out_dir: Path) -> dict[str, Path | str]:
    """Write the study's figures as PNG; returns name -> path, or name -> reason when a plot is impossible."""
    import matplotlib.pyplot as plt
    import optuna
    from optuna.exceptions import ExperimentalWarning
    from optuna.trial import TrialState

    out_dir.mkdir(parents=True, exist_ok=True)
    done: dict[str, Path | str] = {}
    fig = plot_metric_vs_param(study, spec)
    done["metric_vs_param"] = _save(fig, out_dir / f"{spec.objective.metric}_vs_param.png")
    vis = optuna.visualization.matplotlib
    target = None
    target_name = spec.objective.metric
    if spec.multi_objective:
        target = lambda t: t.values[0]  # noqa: E731 - Optuna's plots take one scalar target
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
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

    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
