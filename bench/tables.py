"""Paper-style tables: tracked runs + published numbers -> pandas -> Markdown / LaTeX (booktabs) / CSV.

Three stages, each a plain function on DataFrames so they can be tested and reused (plots read the same runs):
1. `load_runs` reads MLflow (schema in `bench.tracking`) into one row per run; `load_published` reads
   `results/published/*.csv` (validated).
2. `summarize` turns runs into long-form cells: one row per (table row, dataset, direction, metric) with the mean,
   std and count over seeds, the published value beside it, and the protocol differences from the paper's.
3. `render` lays the cells out like the papers: methods as rows, datasets x metrics as columns, best in bold.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from bench.errors import UsageError, closest
from bench.metrics import catalog
from bench.published import format_setting, in_bench_unit, method_label, method_order, parse_setting
from bench.published import load as load_published
from bench.published import pick as pick_published
from bench.official import OFFICIAL, TEST_SETS, epoch_label

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------ metrics
#: Metric labels by name, from the catalogue (bench.metrics.catalog): the one place a metric's facts live.
METRIC_LABELS = {name: m.label for name, m in catalog.CATALOG.items()}

#: How the papers scored (the protocol bench's fingerprints are compared with): pytorch-fid's Inception with
#: its own bilinear resize, on 256x256 outputs of the whole test split, one fake per input, the last epoch
#: (the official test scripts' protocol, bench.official).
PAPER_PROTOCOL = {"image_size": 256, "resize_protocol": "legacy_pytorch", "select": OFFICIAL.epoch,
                  "test_set": OFFICIAL.test_set, "preset": "paper"}

# ------------------------------------------------------------------------------------------ runs from MLflow
RUN_STATUS_FINISHED = "finished"


def _normalize_direction(dataset: str, direction: str | None) -> str:
    """Canonical `<src>2<dst>` for a run's direction tag ('default', 'AtoB' -> the dataset's names)."""
    from bench.data import get_spec

    tag = None if direction in (None, "", "default") else direction
    try:
        return get_spec(dataset).normalize_direction(tag)
    except (UsageError, KeyError):  # an unregistered dataset: keep the tag as it is
        return direction or "default"


def _search_all(client, experiment_ids: list[str], filter_string: str = ""):
    """Every run of the experiments (MLflow pages results)."""
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            break


def load_runs(tracking_uri: str | None = None, *, datasets: Sequence[str] | None = None,
              methods: Sequence[str] | None = None, study: str | None = None, client=None):
    """One row per tracked (method, dataset, seed) run: tags, status, metrics and protocol fingerprints.

    Study trial/parent runs (no `bench.seed` tag) are skipped; every status is kept (callers filter).
    `study=None` returns runs of any study too; use the `study` column to tell them apart.
    """
    import pandas as pd

    from bench.schedule import TAG_SCHEDULE_CUT
    from bench.tracking import TAG_KIND, TAG_PROTOCOL_PREFIX, make_client

    client = client or make_client(tracking_uri)
    experiments = client.search_experiments(max_results=50000)
    if datasets:
        names = {e.name for e in experiments}
        unknown = [d for d in datasets if d not in names]
        if unknown:
            log.warning("no MLflow experiment for dataset(s) %s (have: %s)", ", ".join(unknown),
                        ", ".join(sorted(names)) or "none")
        experiments = [e for e in experiments if e.name in set(datasets)]
    filter_string = f"tags.`bench.study` = '{study}'" if study else ""
    rows = []
    for run in _search_all(client, [e.experiment_id for e in experiments], filter_string):
        tags = run.data.tags
        if "bench.seed" not in tags or "bench.method" not in tags:
            continue
        if methods and tags["bench.method"] not in methods:
            continue
        dataset = tags.get("bench.dataset", "")
        protocols = {}
        for key, value in tags.items():
            if key.startswith(TAG_PROTOCOL_PREFIX):
                try:
                    protocols[key[len(TAG_PROTOCOL_PREFIX):]] = json.loads(value)
                except ValueError:
                    protocols[key[len(TAG_PROTOCOL_PREFIX):]] = {"unparsed": value}
        try:
            swept = json.loads(tags.get("bench.swept") or "{}")
        except ValueError:
            swept = {"swept": tags["bench.swept"]}
        rows.append({
            "run_id": run.info.run_id, "run_name": run.info.run_name, "experiment_id": run.info.experiment_id,
            "method": tags["bench.method"], "dataset": dataset,
            "direction": _normalize_direction(dataset, tags.get("bench.direction")),
            "seed": int(tags["bench.seed"]), "preset": tags.get("bench.preset", ""),
            "study": tags.get("bench.study", ""), "trial": tags.get("bench.trial", ""),
            "swept": swept, "setting": format_setting(swept),
            "status": tags.get("bench.status", run.info.status.lower()), "mlflow_status": run.info.status,
            "error": tags.get("bench.error", ""), "start_time": run.info.start_time,
            "run_dir": tags.get("bench.run_dir", ""), "metrics": dict(run.data.metrics), "protocols": protocols,
            "unavailable": {k[len("bench.unavailable."):]: v for k, v in tags.items()
                            if k.startswith("bench.unavailable.")},
            "kind": tags.get(TAG_KIND, "benchmark"),
            "schedule_cut": tags.get(TAG_SCHEDULE_CUT, ""),
        })
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


#: The columns of `load_runs` (also of an empty frame when there is no tracking store).
RUN_COLUMNS = ["run_id", "run_name", "experiment_id", "method", "dataset", "direction", "seed", "preset", "study",
               "trial", "swept", "setting", "status", "mlflow_status", "error", "start_time", "run_dir", "metrics",
               "protocols", "unavailable", "kind", "schedule_cut"]


def no_runs():
    """An empty `load_runs` frame."""
    import pandas as pd

    return pd.DataFrame([], columns=RUN_COLUMNS)


def finished_runs(runs):
    """Finished runs, the latest per (method, dataset, direction, preset, study, setting, seed) (re-runs replace)."""
    done = runs[(runs["status"] == RUN_STATUS_FINISHED) & (runs["mlflow_status"] == "FINISHED")]
    key = ["method", "dataset", "direction", "preset", "study", "setting", "seed", "kind"]
    done = done.sort_values("start_time")
    dropped = len(done) - len(done.drop_duplicates(key, keep="last"))
    if dropped:
        log.info("%d older duplicate run(s) of the same (method, dataset, seed) ignored; the latest counts", dropped)
    return done.drop_duplicates(key, keep="last")


# ------------------------------------------------------------------------------------------ summarizing
@dataclass(frozen=True)
class TableOptions:
    """What to tabulate: metrics, selection of the checkpoint, filters, published numbers, study."""

    metrics: tuple[str, ...] = ("fid",)
    #: last = the official test scripts' checkpoint; best = selected on the test set (optimistic).
    select: str = OFFICIAL.epoch
    datasets: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None
    published: bool = False
    paper: str | None = None
    study: str | None = None
    baseline: tuple[str, ...] | None = None
    presets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.select not in ("best", "last"):
            raise UsageError(f"--select {self.select!r}: use best or last")


@dataclass
class Table:
    """Long-form cells plus the layout facts the renderers need."""

    cells: Any  # pandas DataFrame, one row per (row, dataset, direction, metric)
    options: TableOptions
    footnotes: list[str] = field(default_factory=list)
    title: str = ""


def _mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return mean, std


def expected_test_count(dataset: str, direction: str) -> int | None:
    """Images in the test split of the source domain (what the papers translated and scored)."""
    from bench.data import get_spec

    try:
        spec = get_spec(dataset)
        src, _ = spec.resolve_direction(direction)
        return int(spec.counts.get("test", {}).get(src)) if spec.counts.get("test", {}).get(src) else None
    except (UsageError, KeyError, TypeError, ValueError):
        return None


def protocol_differences(fingerprint: Mapping[str, Any], metric: str, dataset: str, direction: str,
                         preset: str, select: str) -> list[str]:
    """How one reproduced number was scored differently from the papers (one phrase per difference)."""
    notes = []
    if preset and preset != PAPER_PROTOCOL["preset"]:
        notes.append(f"`{preset}` preset (not the paper's sizes and schedule)")
    size = fingerprint.get("image_size")
    if size is not None and int(size) != PAPER_PROTOCOL["image_size"]:
        notes.append(f"{size}px images (paper: {PAPER_PROTOCOL['image_size']})")
    n = fingerprint.get("n_fake", fingerprint.get("n"))
    expected = expected_test_count(dataset, direction)
    if n is not None and expected is not None and int(n) != expected:
        notes.append(f"{n} test images scored (paper: all {expected})")
    resize = fingerprint.get("protocol", fingerprint.get("resize_protocol"))
    if metric in ("fid", "kid") and resize is not None and resize != PAPER_PROTOCOL["resize_protocol"]:
        notes.append(f"resize protocol {resize} (paper: pytorch-fid {PAPER_PROTOCOL['resize_protocol']})")
    rule = fingerprint.get("test_set")
    if rule is not None and rule != PAPER_PROTOCOL["test_set"]:
        notes.append(f"test set {rule}: {TEST_SETS.get(rule, rule)} (official: {PAPER_PROTOCOL['test_set']})")
    if select != PAPER_PROTOCOL["select"]:
        notes.append(f"{epoch_label(select)} (the official test scripts evaluate the last epoch)")
    return notes


class _Notes:
    """Numbered footnotes; the same text gets the same number."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, text: str) -> int:
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text) + 1


def summarize(runs, options: TableOptions, published=None) -> Table:
    """Runs (from `load_runs`) + published rows -> a `Table` of long-form cells."""
    import pandas as pd

    notes = _Notes()
    done = finished_runs(runs) if len(runs) else runs
    if options.presets:
        done = done[done["preset"].isin(options.presets)]
    if options.datasets:
        done = done[done["dataset"].isin(options.datasets)]
    if options.study:
        in_study = done[done["study"] == options.study]
        if in_study.empty:
            studies = sorted({s for s in runs["study"] if s}) if len(runs) else []
            raise UsageError(f"no finished runs of study {options.study!r}{closest(options.study, studies)} "
                             f"(studies with runs: {', '.join(studies) or 'none'})")
        # The baseline row: the same method(s) run outside any study, at their paper defaults.
        baseline_methods = options.baseline or tuple(sorted(set(in_study["method"])))
        base = done[(done["study"] == "") & done["method"].isin(baseline_methods)
                    & done["dataset"].isin(set(in_study["dataset"]))].assign(_kind="baseline")
        done = pd.concat([in_study.assign(_kind="study"), base], ignore_index=True)
    else:
        done = done[done["study"] == ""].copy()
        if options.methods:
            done = done[done["method"].isin(options.methods)]
        # Imported official checkpoints (`bench import --dataset`) are rows of their own beside the method's runs.
        done["_kind"] = ["import" if k == "import" else "method" for k in done["kind"]] if len(done) else []
    multi_preset = done["preset"].nunique() > 1 if len(done) else False
    multi_method_study = options.study is not None and done[done["_kind"] == "study"]["method"].nunique() > 1

    def row_label(method: str, preset: str, setting: str, kind: str) -> str:
        label = method_label(method)
        if kind == "study":
            # The method is the row's name already: "QS-Attn (Local): num_patches=64", not "...: method=...; ...".
            shown = "; ".join(p for p in setting.split("; ") if not p.startswith("method=")) if setting else ""
            label = (f"{label}: {shown}" if shown else label) if multi_method_study or not setting else setting
        elif kind == "baseline":
            label = f"{label} (baseline)"
        elif kind == "import":
            label = f"{label} (official checkpoint)"
        return f"{label} [{preset}]" if multi_preset else label

    if options.published and published is None:
        published = load_published(list(options.metrics))
    records = []
    pruned = runs[runs["status"] == "pruned"] if len(runs) else runs
    group_cols = ["method", "preset", "setting", "_kind", "dataset", "direction"]
    for (method, preset, setting, kind, dataset, direction), group in (done.groupby(group_cols, sort=False)
                                                                       if len(done) else []):
        for metric in options.metrics:
            key = f"{options.select}/{metric}"
            vals = [float(m[key]) for m in group["metrics"] if key in m and math.isfinite(float(m[key]))]
            epochs = [int(m[f"{options.select}/epoch"]) for m in group["metrics"] if f"{options.select}/epoch" in m]
            rec = {"row": row_label(method, preset, setting, kind), "method": method, "preset": preset,
                   "setting": setting, "kind": kind, "dataset": dataset, "direction": direction, "metric": metric,
                   "mean": float("nan"), "std": float("nan"), "n": len(vals), "seeds": sorted(group["seed"]),
                   "epochs": epochs, "n_pruned": 0, "published": float("nan"), "published_paper": "",
                   "published_table": "", "diff": float("nan"), "marks": []}
            if kind == "study":
                rec["n_pruned"] = _count_pruned(pruned, method, setting, dataset)
                if rec["n_pruned"]:
                    rec["marks"].append(notes.mark(f"{rec['n_pruned']} pruned run(s) of this setting are excluded"))
            if "schedule_cut" in group:  # runs that trained less than their recipe say so
                for cut in sorted({c for c in group["schedule_cut"] if c}):
                    rec["marks"].append(notes.mark(f"schedule cut: {cut}"))
            if not vals and "unavailable" in group:
                for reason in sorted({u[metric] for u in group["unavailable"] if metric in u}):
                    rec["marks"].append(notes.mark(f"{METRIC_LABELS.get(metric, metric)} not computed: {reason}"))
            if vals:
                rec["mean"], rec["std"] = _mean_std(vals)
                diffs = set()
                for fp in (p.get(metric, {}) for p in group["protocols"]):
                    diffs.update(protocol_differences(fp, metric, dataset, direction, preset, options.select))
                fps = {json.dumps({k: v for k, v in p.get(metric, {}).items() if k != "seed"}, sort_keys=True)
                       for p in group["protocols"]}
                if len(fps) > 1:
                    diffs.add("seeds scored under different protocols")
                if diffs:
                    rec["marks"].append(notes.mark("Protocol differs from the paper's: " + "; ".join(sorted(diffs))))
            records.append(rec)
    if options.study and len(pruned):
        # Settings whose every run was pruned still get a row, so a reader sees they were tried.
        have = {(r["method"], r["setting"], r["dataset"]) for r in records}
        study_pruned = pruned[pruned["study"] == options.study]
        for (method, preset, setting, dataset, direction), group in study_pruned.groupby(
                ["method", "preset", "setting", "dataset", "direction"], sort=False):
            if (method, setting, dataset) in have:
                continue
            mark = notes.mark(f"every run of this setting was pruned ({len(group)}); no final score")
            for metric in options.metrics:
                records.append({"row": row_label(method, preset, setting, "study"), "method": method,
                                "preset": preset, "setting": setting, "kind": "study", "dataset": dataset,
                                "direction": direction, "metric": metric, "mean": float("nan"), "std": float("nan"),
                                "n": 0, "seeds": sorted(group["seed"]), "epochs": [], "n_pruned": len(group),
                                "published": float("nan"), "published_paper": "", "published_table": "",
                                "diff": float("nan"), "marks": [mark]})
    records.sort(key=_row_order)
    cells = pd.DataFrame(records, columns=["row", "method", "preset", "setting", "kind", "dataset", "direction",
                                           "metric", "mean", "std", "n", "seeds", "epochs", "n_pruned", "published",
                                           "published_paper", "published_table", "diff", "marks"])
    if options.published and published is not None and len(published):
        cells = _attach_published(cells, published, options, notes, row_label)
    title = (f"Study {options.study}" if options.study else "Methods") + f" ({epoch_label(options.select)}, " + \
        ", ".join(METRIC_LABELS.get(m, m) for m in options.metrics) + ")"
    return Table(cells=cells, options=options, footnotes=notes.texts, title=title)


_KIND_ORDER = {"method": 0, "study": 0, "import": 1, "baseline": 1, "published": 2}


def _natural(text: str) -> tuple:
    """Sort key that orders 'num_patches=64' before 'num_patches=128'."""
    import re

    return tuple(float(p) if p.replace(".", "", 1).isdigit() else p for p in re.split(r"(\d+(?:\.\d+)?)", text))


def _row_order(rec: Mapping[str, Any]) -> tuple:
    """Rows: reproduced (paper order of methods, then preset; study settings in natural order), baseline last."""
    return (_KIND_ORDER.get(rec["kind"], 3), *method_order(rec["method"]),
            rec["preset"] != "paper", rec["preset"], _natural(rec["setting"]))


def _count_pruned(pruned, method: str, setting: str, dataset: str) -> int:
    if not len(pruned):
        return 0
    return int(((pruned["method"] == method) & (pruned["setting"] == setting) & (pruned["dataset"] == dataset)).sum())


def _attach_published(cells, published, options: TableOptions, notes: _Notes, row_label):
    """Fill the published column and the difference; add published-only method rows (main tables)."""
    import pandas as pd

    pub = published[published["metric"].isin(options.metrics)]
    if options.datasets:
        pub = pub[pub["dataset"].isin(options.datasets)]
    sources: dict[tuple[str, str], str] = {}
    cells = cells.copy()
    for i, cell in cells.iterrows():
        want = parse_setting(cell["setting"])
        cand = pub[(pub["method"] == cell["method"]) & (pub["dataset"] == cell["dataset"])
                   & (pub["direction"] == cell["direction"]) & (pub["metric"] == cell["metric"])]
        # Ablation variants carry a setting (e.g. num_patches=64, ablation=III); a plain row matches setting "".
        cand = cand[[parse_setting(s) == want for s in cand["setting"]]]
        chosen, others = pick_published(cand, cell["method"], options.paper)
        if chosen is None:
            continue
        value = in_bench_unit(chosen)
        if value is None:
            continue
        cells.at[i, "published"] = value
        cells.at[i, "published_paper"] = chosen["paper"]
        cells.at[i, "published_table"] = chosen["table"]
        sources[(chosen["paper"], chosen["table"])] = chosen["source"]
        if chosen["unit"] not in ("", catalog.get(chosen["metric"]).unit):
            cells.at[i, "marks"] = cells.at[i, "marks"] + [notes.mark(
                f"Published in unit {chosen['unit']!r}, converted to {catalog.get(chosen['metric']).unit!r} "
                f"({chosen['protocol_note']})")]
        if not math.isnan(cell["mean"]):
            cells.at[i, "diff"] = cell["mean"] - value
        if others:
            alt = ", ".join(f"{o['value']:g} ({o['paper']} T{o['table']})" for o in others)
            cells.at[i, "marks"] = cells.at[i, "marks"] + [notes.mark(
                f"{method_label(cell['method'])} {cell['dataset']} {cell['metric']}: other published values {alt}")]
    if not options.study:
        # Published-only rows (methods the papers compare with but that were not run here), like the papers.
        seen = set(zip(cells["method"], cells["dataset"], cells["direction"], cells["metric"]))
        have_cols = set(zip(cells["dataset"], cells["direction"]))
        extra = []
        main = pub[(pub["setting"] == "") & pub["table"].isin(["1"])]
        if options.methods:
            main = main[main["method"].isin(options.methods)]
        if options.paper:
            main = main[main["paper"] == options.paper]
        if have_cols:  # only the columns that have reproduced numbers
            main = main[[(d, r) in have_cols for d, r in zip(main["dataset"], main["direction"])]]
        for (method, dataset, direction, metric), cand in main.groupby(["method", "dataset", "direction", "metric"],
                                                                       sort=False):
            if (method, dataset, direction, metric) in seen:
                continue
            chosen, _ = pick_published(cand, method, options.paper)
            value = in_bench_unit(chosen) if chosen else None
            if value is None:
                continue
            sources[(chosen["paper"], chosen["table"])] = chosen["source"]
            extra.append({"row": method_label(method), "method": method, "preset": "", "setting": "",
                          "kind": "published", "dataset": dataset, "direction": direction, "metric": metric,
                          "mean": float("nan"), "std": float("nan"), "n": 0, "seeds": [], "epochs": [],
                          "n_pruned": 0, "published": value, "published_paper": chosen["paper"],
                          "published_table": chosen["table"], "diff": float("nan"), "marks": []})
        if extra:
            cells = pd.concat([cells, pd.DataFrame(extra)], ignore_index=True)
    source_mark = {key: notes.mark(f"Published: {key[0]} Table {key[1]} — {source}")
                   for key, source in sorted(sources.items())}
    # Each published value points at its source footnote.
    cells["published_mark"] = [source_mark.get((p, t), 0)
                               for p, t in zip(cells["published_paper"], cells["published_table"])]
    return cells


# ------------------------------------------------------------------------------------------ rendering
def _fmt(value: float, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return catalog.get(metric).format(value)


def _columns(cells) -> list[tuple[str, str, str]]:
    """(dataset, direction, metric) column groups in first-seen dataset order, metrics in --metric order."""
    seen: list[tuple[str, str]] = []
    for d, r in zip(cells["dataset"], cells["direction"]):
        if (d, r) not in seen:
            seen.append((d, r))
    metrics = list(dict.fromkeys(cells["metric"]))
    return [(d, r, m) for d, r in seen for m in metrics
            if ((cells["dataset"] == d) & (cells["direction"] == r) & (cells["metric"] == m)).any()]


def dataset_label(dataset: str, direction: str) -> str:
    """'horse2zebra' for its default direction, 'afhq cat→dog' otherwise."""
    if direction in (dataset, "default", ""):
        return dataset
    src, _, dst = direction.partition("2")
    return f"{dataset} {src}→{dst}" if dst else f"{dataset} {direction}"


def _best_rows(cells, columns) -> set[tuple[str, str, str, str]]:
    """(row, dataset, direction, metric) of the best reproduced mean in each column (ties all bold)."""
    best = set()
    for d, r, m in columns:
        col = cells[(cells["dataset"] == d) & (cells["direction"] == r) & (cells["metric"] == m)
                    & cells["mean"].notna()]
        if len(col) < 2:
            continue
        target = col["mean"].max() if catalog.higher_is_better(m) else col["mean"].min()
        for row in col[col["mean"] == target]["row"]:
            best.add((row, d, r, m))
    return best


def wide(table: Table, fmt: str = "md"):
    """The paper layout as a DataFrame of strings: rows = methods, columns = (dataset, metric, ours/paper/Δ)."""
    import pandas as pd

    cells, opts = table.cells, table.options
    columns = _columns(cells)
    best = _best_rows(cells, columns)
    rows = list(dict.fromkeys(cells["row"]))
    show_pub = opts.published and cells["published"].notna().any()

    def bold(text: str) -> str:
        return f"**{text}**" if fmt == "md" else (f"\\textbf{{{text}}}" if fmt == "latex" else text)

    def sup(marks: list[int]) -> str:
        if not marks:
            return ""
        joined = ",".join(map(str, sorted(set(marks))))
        return f"<sup>{joined}</sup>" if fmt == "md" else (f"$^{{{joined}}}$" if fmt == "latex" else f" [{joined}]")

    pm = " $\\pm$ " if fmt == "latex" else " ± "

    def head(m: str) -> str:
        return f"{catalog.get(m).label}{catalog.get(m).arrow}"

    kinds = ("ours", "paper", "Δ") if show_pub else ("ours",)
    header = [(dataset_label(d, r), head(m), k) for d, r, m in columns for k in kinds]
    data: dict[tuple[str, str, str], list[str]] = {key: [] for key in header}
    for row in rows:
        for d, r, m in columns:
            group, arrow_key = dataset_label(d, r), head(m)
            cell = cells[(cells["row"] == row) & (cells["dataset"] == d) & (cells["direction"] == r)
                         & (cells["metric"] == m)]
            if cell.empty:
                ours, paper, diff = "", "", ""
            else:
                c = cell.iloc[0]
                if math.isnan(c["mean"]):
                    ours = "—" if c["kind"] != "published" else ""
                else:
                    ours = _fmt(c["mean"], m)
                    if c["n"] > 1:
                        ours += pm + _fmt(c["std"], m)
                    if (row, d, r, m) in best:
                        ours = bold(ours)
                    ours += f" (n={c['n']})"
                ours += sup(c["marks"])
                paper = _fmt(c["published"], m) if not math.isnan(c["published"]) else "—"
                if paper != "—" and c.get("published_mark", 0):
                    paper += sup([int(c["published_mark"])])
                diff = "—" if math.isnan(c["diff"]) else f"{c['diff']:+.{catalog.get(m).decimals}f}"
                if fmt == "latex" and diff != "—":
                    diff = diff.replace("-", "$-$", 1) if diff.startswith("-") else diff
            data[(group, arrow_key, "ours")].append(ours)
            if show_pub:
                data[(group, arrow_key, "paper")].append(paper)
                data[(group, arrow_key, "Δ")].append(diff)
    frame = pd.DataFrame(data, index=rows)
    frame.columns = pd.MultiIndex.from_tuples(header) if header else frame.columns
    frame.index.name = "Method"
    return frame


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table with numbered footnotes below it."""
    frame = wide(table, "md")
    if frame.empty:
        return "_No finished runs match._\n"
    show_pub = frame.columns.nlevels == 3 and "paper" in set(frame.columns.get_level_values(2))
    heads = []
    for group, metric, kind in frame.columns:
        heads.append(f"{group} {metric}" if kind == "ours" else ("paper" if kind == "paper" else "Δ"))
    lines = ["| Method | " + " | ".join(heads) + " |",
             "|:--|" + "|".join("--:" for _ in heads) + "|"]
    for name, values in frame.iterrows():
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    out = "\n".join(lines) + "\n"
    notes = [f"<sup>{i}</sup> {text}" for i, text in enumerate(table.footnotes, 1)]
    legend = "Mean ± std over seeds (n = number of seeds); best reproduced value per column in bold"
    if show_pub:
        legend += "; Δ = ours − paper"
    out += "\n" + legend + ".\n"
    if notes:
        out += "\n" + "<br>\n".join(notes) + "\n"
    return out


_LATEX_ESCAPES = {"&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "$": r"\$", "\\": r"\textbackslash{}", "→": r"$\rightarrow$",
                  "±": r"$\pm$", "Δ": r"$\Delta$", "×": r"$\times$", "—": "---", "↑": r"$\uparrow$",
                  "↓": r"$\downarrow$", "−": "$-$", "<": r"\textless{}", ">": r"\textgreater{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map the few Unicode symbols tables use to math."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(table: Table, caption: str | None = None, label: str = "tab:results") -> str:
    """A booktabs `table` environment (needs booktabs; `table*` + \\resizebox, i.e. graphicx, when wide)."""
    frame = wide(table, "latex")
    if frame.empty:
        return "% no finished runs match\n"
    groups = list(dict.fromkeys(frame.columns.get_level_values(0)))
    spec = "l" + "".join("r" for _ in frame.columns)
    # More than a column's worth of numbers: span both columns and shrink to the text width (needs graphicx).
    wide_table = len(frame.columns) > 6
    env = "table*" if wide_table else "table"
    lines = [f"\\begin{{{env}}}[t]", "\\centering", "\\small"]
    if wide_table:
        lines.append("\\resizebox{\\textwidth}{!}{%")
    lines += [f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
    top, rules, col = [""], [], 2
    for g in groups:
        width = sum(1 for c in frame.columns if c[0] == g)
        top.append(f"\\multicolumn{{{width}}}{{c}}{{{latex_escape(g)}}}")
        rules.append(f"\\cmidrule(lr){{{col}-{col + width - 1}}}")
        col += width
    lines.append(" & ".join(top) + " \\\\")
    lines.append(" ".join(rules))
    sub = ["Method"]
    for _, metric, kind in frame.columns:
        sub.append(latex_escape(metric) if kind == "ours" else ("paper" if kind == "paper" else "$\\Delta$"))
    lines.append(" & ".join(sub) + " \\\\")
    lines.append("\\midrule")
    for name, values in frame.iterrows():
        cells = [latex_escape(name)] + [_latex_cell(v) for v in values]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}" + ("}" if wide_table else "")]
    cap = caption or (latex_escape(table.title) + ". Mean $\\pm$ std over seeds (n seeds); best reproduced value in bold.")
    lines.append(f"\\caption{{{cap}}}")
    lines.append(f"\\label{{{label}}}")
    if table.footnotes:
        lines.append("\\par\\smallskip\\footnotesize\\raggedright")
        for i, text in enumerate(table.footnotes, 1):
            lines.append(f"$^{{{i}}}$ {latex_escape(text)}\\\\")
    lines.append(f"\\end{{{env}}}")
    return "\n".join(lines) + "\n"


def _latex_cell(text: str) -> str:
    """Escape a rendered cell, keeping the LaTeX we put in on purpose (bold, ±, superscripts, minus)."""
    keep = ("\\textbf{", "$\\pm$", "$^{", "$-$")
    out, i = [], 0
    while i < len(text):
        for k in keep:
            if text.startswith(k, i):
                if k == "\\textbf{":
                    out.append(k)
                    i += len(k)
                else:
                    end = text.index("$", i + 1) + 1
                    out.append(text[i:end])
                    i = end
                break
        else:
            ch = text[i]
            out.append("}" if ch == "}" else latex_escape(ch))
            i += 1
    return "".join(out)


def to_csv(table: Table) -> str:
    """The long-form cells as CSV (one row per row × dataset × metric; machine-readable)."""
    cells = table.cells.copy()
    for col in ("seeds", "epochs", "marks"):
        cells[col] = [" ".join(map(str, v)) for v in cells[col]]
    cells["footnotes"] = [" | ".join(table.footnotes[m - 1] for m in marks) if marks else ""
                          for marks in table.cells["marks"]]
    return cells.drop(columns=["marks"]).to_csv(index=False)


FORMATS = {"md": to_markdown, "latex": to_latex, "csv": to_csv}


def render(table: Table, fmt: str = "md") -> str:
    """Render a table as md, latex or csv."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    return FORMATS[fmt](table)


def build_table(options: TableOptions, tracking_uri: str | None = None, runs=None, published=None) -> Table:
    """Read runs (unless given) and published numbers (when asked) and summarize them into a `Table`."""
    if runs is None:
        runs = load_runs(tracking_uri, datasets=options.datasets, study=options.study)
    if options.published and published is None:
        published = load_published(list(options.metrics))
    return summarize(runs, options, published)
