"""Paper-style tables: tracked runs + published numbers -> pandas -> Markdown / LaTeX (booktabs) / CSV.

Three stages, each a plain function on DataFrames so they can be tested and reused (plots read the same runs):
1. `load_runs` reads MLflow (schema in `bench.tracking`) into one row per run; `load_published` reads
   `results/published/*.csv` (validated).
2. `summarize` turns runs into long-form cells: one row per (table row, dataset, direction, metric) with the mean,
   std and count over seeds, the published value beside it, and the protocol differences from the paper's.
3. `layout` + `render` lay the cells out like the papers: methods (or a study's parameters) as rows, datasets x
   metrics as columns, bold where a value is tied with its column's best (Welch t-test over seeds), rendered as
   Markdown, CSV, or LaTeX through pandas' Styler (booktabs + siunitx). Study tables (`bench.studies.report`)
   are `Table`s too and go through the same renderer.
"""

from __future__ import annotations

import json
import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from bench.errors import UsageError, closest
from bench.formatting import human
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
    from bench.tracking import TAG_KIND, bench_key, make_client, read_protocols

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
        protocols = read_protocols(tags)
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
            "run_dir": tags.get("bench.run_dir", ""),
            "metrics": {bench_key(k): v for k, v in run.data.metrics.items()}, "protocols": protocols,
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
    #: Names of the leading label columns; each cell's `labels` holds its row's texts for them.
    label_names: tuple[str, ...] = ("Method",)
    #: Legend lines that apply to this table (e.g. what a pruned mark means), printed with the rule for bold.
    notes: list[str] = field(default_factory=list)


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
        notes.append(f"{preset} preset (not the paper's sizes and schedule)")
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
            shown = "; ".join(f"{k}={human(v)}" for k, v in parse_setting(setting).items() if k != "method")
            label = (f"{label}: {shown}" if shown else label) if multi_method_study or not setting else shown
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
                   "mean": float("nan"), "std": float("nan"), "n": len(vals), "values": vals,
                   "seeds": sorted(group["seed"]),
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
                                "n": 0, "values": [], "seeds": sorted(group["seed"]), "epochs": [],
                                "n_pruned": len(group),
                                "published": float("nan"), "published_paper": "", "published_table": "",
                                "diff": float("nan"), "marks": [mark]})
    records.sort(key=_row_order)
    cells = pd.DataFrame(records, columns=CELL_COLUMNS[:-1])
    if options.published and published is not None and len(published):
        cells = _attach_published(cells, published, options, notes, row_label)
    label_names = ("Method",)
    if options.study and len(cells):
        label_names, labels = _study_labels(cells, multi_method_study, multi_preset)
        cells["labels"] = labels
    else:
        cells["labels"] = [(row,) for row in cells["row"]]
    title = (f"Study {options.study}" if options.study else "Methods") + f" ({epoch_label(options.select)}, " + \
        ", ".join(METRIC_LABELS.get(m, m) for m in options.metrics) + ")"
    return Table(cells=cells, options=options, footnotes=notes.texts, title=title, label_names=label_names)


#: The long-form cell columns every table (runs or study) is made of.
CELL_COLUMNS = ["row", "method", "preset", "setting", "kind", "dataset", "direction", "metric", "mean", "std", "n",
                "values", "seeds", "epochs", "n_pruned", "published", "published_paper", "published_table", "diff",
                "marks", "labels"]


def _study_labels(cells, multi_method: bool, multi_preset: bool) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Label columns of a study view: one per swept parameter (3 significant digits), Method when it varies."""
    names: list[str] = []
    for setting in cells["setting"]:
        names += [k for k in parse_setting(setting) if k != "method" and k not in names]
    label_names = tuple(names) + (("Method",) if multi_method or not names else ()) + \
        (("Preset",) if multi_preset else ())
    labels = []
    for c in cells.to_dict("records"):
        if c["kind"] == "study":
            params = parse_setting(c["setting"])
            texts = [human(params[k]) if k in params else "—" for k in names]
            if multi_method or not names:
                texts.append(method_label(c["method"]))
        else:  # baseline / published rows: their name in the first column
            texts = [c["row"].split(" [")[0]] + [""] * (len(label_names) - 1 - (1 if multi_preset else 0))
        if multi_preset:
            texts.append(c["preset"])
        labels.append(tuple(texts))
    return label_names, labels


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


def citation(source: str, paper: str) -> str:
    """The paper a published number comes from, as a reader cites it, never the internal file it was copied from:
    'Hu et al., QS-Attn ..., CVPR 2022 (arXiv 2203.08483) Table 1' -> the same without 'Table 1' (the note names
    the table); 'shared/papers/003_x.txt (Hu et al., QS-Attn, CVPR 2022) Table 1' -> 'Hu et al., QS-Attn, CVPR 2022';
    the paper id when the source names nothing."""
    text = (source or "").strip()
    head = text.split(" ", 1)[0]
    if "/" in head or re.search(r"\.(txt|md|pdf|csv)$", head):  # an internal file first: its parenthesised reference
        found = re.findall(r"\(([^()]*\d{4}[^()]*)\)", text)
        return found[0].split(";")[0].strip() if found else paper
    cited = re.match(r"[^()]*\([^()]*\d{4}[^()]*\)", text)  # up to '(arXiv 2203.08483)': what comes after is where
    if cited:                                              # in the paper (named by the note) and how it was read
        return cited.group(0).strip()
    text = re.split(r"[\s,;]+(?:Table|Tab\.|Fig\.|Figure|Sec\.)\s", text)[0]
    return text.strip() or paper


def published_note(paper: str, table: str, source: str) -> str:
    """'Published: Hu et al., QS-Attn, CVPR 2022, Table 1.'"""
    where = f"Table {table}" if str(table)[:1].isdigit() else str(table)
    return f"Published: {citation(source, paper)}, {where}." if where else f"Published: {citation(source, paper)}."


def _attach_published(cells, published, options: TableOptions, notes: _Notes, row_label):
    """Fill the published column and the difference; add published-only method rows (main tables)."""
    import pandas as pd

    pub = published[published["metric"].isin(options.metrics)]
    if options.datasets:
        pub = pub[pub["dataset"].isin(options.datasets)]
    sources: dict[tuple[str, str], str] = {}
    cells = cells.copy()
    # Marks about a published number (source, unit conversion, other papers' values) go on the row's label,
    # so the number columns stay plain numbers that siunitx aligns.
    cells["published_marks"] = [[] for _ in range(len(cells))]
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
            cells.at[i, "published_marks"] = cells.at[i, "published_marks"] + [notes.mark(
                f"Published in unit {chosen['unit']!r}, converted to {catalog.get(chosen['metric']).unit!r} "
                f"({chosen['protocol_note']})")]
        if not math.isnan(cell["mean"]):
            cells.at[i, "diff"] = cell["mean"] - value
        if others:
            alt = ", ".join(f"{o['value']:g} ({o['paper']} T{o['table']})" for o in others)
            cells.at[i, "published_marks"] = cells.at[i, "published_marks"] + [notes.mark(
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
                          "mean": float("nan"), "std": float("nan"), "n": 0, "values": [], "seeds": [],
                          "epochs": [],
                          "n_pruned": 0, "published": value, "published_paper": chosen["paper"],
                          "published_table": chosen["table"], "diff": float("nan"), "marks": [],
                          "published_marks": []})
        if extra:
            cells = pd.concat([cells, pd.DataFrame(extra)], ignore_index=True)
    source_mark = {key: notes.mark(published_note(key[0], key[1], source)) for key, source in sorted(sources.items())}
    # Each published value points at its source footnote.
    cells["published_mark"] = [source_mark.get((p, t), 0)
                               for p, t in zip(cells["published_paper"], cells["published_table"])]
    return cells


# ------------------------------------------------------------------------------------------ layout
#: Two values are "significantly different" below this p-value of a two-sided Welch t-test over seeds.
SIGNIFICANCE_LEVEL = 0.05
BOLD_RULE = ("Bold: the best mean of each column and every mean not significantly different from it "
             "(two-sided Welch t-test over seeds, p ≥ 0.05); a value from a single seed is never bold.")
DELTA_NOTE = "Δ = ours − paper."


@dataclass(frozen=True)
class Column:
    """One column of numbers: a (dataset, direction, metric) and which number (ours, paper or Δ)."""

    dataset: str
    direction: str
    metric: str
    kind: str = "ours"  # ours | paper | delta

    @property
    def group(self) -> str:
        return dataset_label(self.dataset, self.direction)

    @property
    def head(self) -> str:
        m = catalog.get(self.metric)
        return f"{m.label}{m.arrow}"


@dataclass(frozen=True)
class Entry:
    """One displayed number (NaN = no value: '—'); `blank` when the cell has nothing to say at all."""

    value: float = float("nan")
    std: float = float("nan")
    n: int = 0
    bold: bool = False
    marks: tuple[int, ...] = ()
    blank: bool = False

    @property
    def missing(self) -> bool:
        return self.value is None or math.isnan(self.value)


@dataclass
class Layout:
    """The paper layout of a `Table`: label columns, then numbers per (dataset, metric[, ours/paper/Δ])."""

    label_names: tuple[str, ...]
    rows: list[str]
    labels: dict[str, tuple[str, ...]]
    columns: list[Column]
    entries: dict[tuple[str, Column], Entry]
    #: Seeds behind each row's reproduced values (distinct counts), for the caption or a Seeds column.
    seed_counts: dict[str, set[int]]
    footnotes: list[str]
    title: str
    notes: list[str]
    #: Footnote marks of a whole row (where its published numbers come from), shown after its first label.
    row_marks: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def uniform_seeds(self) -> int | None:
        counts = set().union(*self.seed_counts.values()) if self.seed_counts else set()
        return next(iter(counts)) if len(counts) == 1 else None


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


def _tied(best: Sequence[float], other: Sequence[float]) -> bool:
    """Whether `other` is not significantly different from `best` (two-sided Welch t-test, both n >= 2)."""
    from scipy import stats

    if len(best) < 2 or len(other) < 2:
        return False
    if list(best) == list(other):
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero variance on both sides: t = ±inf or nan
        p = stats.ttest_ind(best, other, equal_var=False).pvalue
    if math.isnan(p):  # both constant: tied exactly when the means agree
        return math.isclose(sum(best) / len(best), sum(other) / len(other))
    return p >= SIGNIFICANCE_LEVEL


def bold_cells(cells, columns) -> set[tuple[str, str, str, str]]:
    """(row, dataset, direction, metric) of every value statistically tied with its column's best (BOLD_RULE)."""
    best_cells = set()
    for d, r, m in columns:
        col = cells[(cells["dataset"] == d) & (cells["direction"] == r) & (cells["metric"] == m)
                    & cells["mean"].notna() & (cells["kind"] != "published") & (cells["n"] > 0)]
        if len(col) < 2:
            continue
        top = col.loc[col["mean"].idxmax() if catalog.higher_is_better(m) else col["mean"].idxmin()]
        best_values = list(top["values"])
        if len(best_values) < 2:
            continue  # a single seed's best proves nothing
        for _, c in col.iterrows():
            if c["row"] == top["row"] or _tied(best_values, list(c["values"])):
                best_cells.add((c["row"], d, r, m))
    return best_cells


def layout(table: Table, *, delta: bool = True) -> Layout:
    """The paper layout: which numbers go where, which are bold, which footnote marks they carry.

    With published numbers each metric gets ours | paper | Δ columns (`delta=False`: ours | paper).
    """
    cells, opts = table.cells, table.options
    keys = _columns(cells)
    show_pub = bool(opts.published and len(cells) and cells["published"].notna().any())
    kinds = (("ours", "paper", "delta") if delta else ("ours", "paper")) if show_pub else ("ours",)
    columns = [Column(d, r, m, k) for d, r, m in keys for k in kinds]
    bold = bold_cells(cells, keys) if len(cells) else set()
    rows = list(dict.fromkeys(cells["row"]))
    label_names = tuple(table.label_names)
    labels: dict[str, tuple[str, ...]] = {}
    entries: dict[tuple[str, Column], Entry] = {}
    seed_counts: dict[str, set[int]] = {row: set() for row in rows}
    row_marks: dict[str, set[int]] = {row: set() for row in rows}
    for c in cells.to_dict("records"):
        row = c["row"]
        labels.setdefault(row, tuple(c.get("labels") or (row,)))
        if show_pub and not math.isnan(c["published"]):
            row_marks[row].update(m for m in [int(c.get("published_mark") or 0), *(c.get("published_marks") or [])]
                                  if m)
        if c["kind"] != "published" and c["n"]:
            seed_counts[row].add(int(c["n"]))
        for kind in kinds:
            col = Column(c["dataset"], c["direction"], c["metric"], kind)
            if kind == "ours":
                entry = Entry(blank=True) if c["kind"] == "published" else Entry(
                    c["mean"], c["std"], int(c["n"]), (row, c["dataset"], c["direction"], c["metric"]) in bold,
                    tuple(sorted(set(c["marks"]))))
            elif kind == "paper":
                entry = Entry(c["published"])
            else:
                entry = Entry(c["diff"])
            entries[(row, col)] = entry
    seed_counts = {row: n for row, n in seed_counts.items() if n}
    notes = []
    if any(e.bold for e in entries.values()):
        notes.append(BOLD_RULE)
    if show_pub and delta:
        notes.append(DELTA_NOTE)
    notes += table.notes
    return Layout(label_names, rows, labels, columns, entries, seed_counts, list(table.footnotes), table.title, notes,
                  {row: tuple(sorted(m)) for row, m in row_marks.items() if m})


def _seeds_text(lay: Layout) -> str:
    n = lay.uniform_seeds
    if n is None:
        return "Mean ± std over seeds (how many: Seeds column)." if lay.seed_counts else ""
    return "Single seed." if n == 1 else f"Mean ± std over {n} seeds."


# ------------------------------------------------------------------------------------------ Markdown
def _md_entry(entry: Entry, col: Column) -> str:
    if entry.blank:
        return ""
    sup = f"<sup>{','.join(map(str, entry.marks))}</sup>" if entry.marks else ""
    if entry.missing:
        return "—" + sup
    if col.kind == "delta":
        return f"{entry.value:+.{catalog.get(col.metric).decimals}f}"
    text = _fmt(entry.value, col.metric)
    if col.kind == "ours":
        if entry.n > 1 and not math.isnan(entry.std):
            text += " ± " + _fmt(entry.std, col.metric)
        if entry.bold:
            text = f"**{text}**"
        if entry.n:
            text += f" (n={entry.n})"
    return text + sup


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table with its notes and numbered footnotes below it."""
    lay = layout(table)
    if not lay.rows:
        return "_No finished runs match._\n"
    heads = list(lay.label_names) + [f"{c.group} {c.head}" if c.kind == "ours" else
                                     ("paper" if c.kind == "paper" else "Δ") for c in lay.columns]
    lines = [f"**{lay.title}**", ""] if lay.title and table.options.study else []
    lines += ["| " + " | ".join(heads) + " |",
              "|" + "|".join(":--" for _ in lay.label_names) + "|" + "|".join("--:" for _ in lay.columns) + "|"]
    for row in lay.rows:
        labels = list(lay.labels[row]) + [""] * (len(lay.label_names) - len(lay.labels[row]))
        if row in lay.row_marks:
            labels[0] += f"<sup>{','.join(map(str, lay.row_marks[row]))}</sup>"
        values = [_md_entry(lay.entries.get((row, c), Entry(blank=True)), c) for c in lay.columns]
        lines.append("| " + " | ".join(labels + values) + " |")
    out = "\n".join(lines) + "\n"
    legend = " ".join(t for t in ["Mean ± std over seeds (n = number of seeds).", *lay.notes] if t)
    out += "\n" + legend + "\n"
    if lay.footnotes:
        out += "\n" + "<br>\n".join(f"<sup>{i}</sup> {text}" for i, text in enumerate(lay.footnotes, 1)) + "\n"
    return out


# ------------------------------------------------------------------------------------------ LaTeX
#: Widths of a two-column article (10 pt): one column and the whole text block. Wider tables become `table*`.
COLUMN_WIDTH_PT = 229.0
TEXT_WIDTH_PT = 469.0
#: (font size command, its size in pt, \tabcolsep in pt), tried in order until the table fits.
LATEX_SIZES = (("small", 9.0, 6.0), ("footnotesize", 8.0, 4.0), ("scriptsize", 7.0, 3.0))
_LATEX_SYMBOLS = {"→": r"$\rightarrow$", "±": r"$\pm$", "Δ": r"$\Delta$", "×": r"$\times$", "↑": r"$\uparrow$",
                  "↓": r"$\downarrow$", "−": "$-$", "≥": r"$\geq$", "≤": r"$\leq$", "—": "---", "–": "--",
                  "†": r"$^\dagger$", "<": r"\textless{}", ">": r"\textgreater{}", "σ": r"$\sigma$"}


def latex_escape(text: str) -> str:
    """Text for LaTeX: the few Unicode symbols tables use as math, everything else escaped by pandas."""
    try:
        from pandas.io.formats.style_render import _escape_latex_math as escape
    except ImportError:  # pragma: no cover - pandas moved it; keep a correct (if plainer) escape
        escape = _escape_fallback
    mapped = "".join(_LATEX_SYMBOLS.get(ch, ch.replace("$", r"\$")) for ch in str(text))
    return escape(mapped).replace(r"\textless\{\}", r"\textless{}").replace(r"\textgreater\{\}", r"\textgreater{}")


def _escape_fallback(text: str) -> str:
    out, math_mode = [], False
    for ch in text:
        if ch == "$":
            math_mode = not math_mode
            out.append(ch)
        elif math_mode:
            out.append(ch)
        else:
            out.append({"&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                        "~": r"\textasciitilde ", "^": r"\textasciicircum ", "\\": r"\textbackslash "}.get(ch, ch))
    return "".join(out)


@dataclass(frozen=True)
class _NumberFormat:
    """siunitx `table-format` of one column: digits before/after the point, of the value and its ± part."""

    integer: int
    decimals: int
    sign: str = ""
    unc_integer: int = 0

    def spec(self) -> str:
        fmt = f"{self.sign}{self.integer}.{self.decimals}" if self.decimals else f"{self.sign}{self.integer}"
        if self.unc_integer:
            fmt += f"({self.unc_integer}.{self.decimals})" if self.decimals else f"({self.unc_integer})"
        return fmt

    def width_em(self) -> float:
        """Approximate width in em (digits are 0.5 em in Computer Modern)."""
        width = 0.5 * (self.integer + self.decimals) + (0.28 if self.decimals else 0) + (0.5 if self.sign else 0)
        if self.unc_integer:
            width += 1.2 + 0.5 * (self.unc_integer + self.decimals) + (0.28 if self.decimals else 0)
        return width


def _digits(value: float) -> int:
    return max(1, len(str(int(abs(value))))) if math.isfinite(value) else 1


def _number_format(lay: Layout, col: Column) -> _NumberFormat:
    decimals = catalog.get(col.metric).decimals
    values = [e for (row, c), e in lay.entries.items() if c == col and not e.blank and not e.missing]
    integer = max([_digits(e.value) for e in values] or [1])
    sign = "+" if col.kind == "delta" else ("-" if any(e.value < 0 for e in values) else "")
    unc = [e.std for e in values if col.kind == "ours" and e.n > 1 and not math.isnan(e.std)]
    return _NumberFormat(integer, decimals, sign, max([_digits(s) for s in unc]) if unc else 0)


def _latex_number(entry: Entry, col: Column) -> str:
    """An S-column cell: '46.0 \\pm 1.0', '+0.9', '{---}' for no value, marks as zero-width superscripts."""
    if entry.blank:
        return "{}"
    if entry.missing:
        text = "{---}"
    elif col.kind == "delta":
        text = f"{entry.value:+.{catalog.get(col.metric).decimals}f}"
    else:
        text = _fmt(entry.value, col.metric)
        if col.kind == "ours" and entry.n > 1 and not math.isnan(entry.std):
            text += r" \pm " + _fmt(entry.std, col.metric)
    if entry.marks:
        text += r"{\rlap{\textsuperscript{" + ",".join(map(str, entry.marks)) + "}}}"
    return text


def _text_width_em(text: str) -> float:
    """Rough width of plain text in em (Computer Modern: capitals and wide glyphs ~0.75 em, the rest ~0.5)."""
    plain = re.sub(r"\$[^$]*\$", "x", text)
    return sum(0.75 if (ch.isupper() or ch in "mwMW@%") else (0.3 if ch in "il.,:;!|()[]' " else 0.5)
               for ch in plain)


def to_latex(table: Table, caption: str | None = None, label: str = "tab:results") -> str:
    """A booktabs float through pandas' Styler: siunitx S columns aligned on the point and on ±, the caption
    above, `table*` when wider than a column. Needs \\usepackage{booktabs} and \\usepackage{siunitx} (v3).

    The first layout that fits a two-column article is taken: one column at \\small or \\footnotesize, else
    both columns at \\small, \\footnotesize or \\scriptsize; with published numbers, the Δ columns go
    before anything is shrunk further (the Markdown and CSV keep them).
    """
    if not len(table.cells):
        return "% no finished runs match\n"
    tried = []
    for delta in (True, False):
        lay = layout(table, delta=delta)
        for env, limit in (("table", COLUMN_WIDTH_PT), ("table*", TEXT_WIDTH_PT)):
            for size in (LATEX_SIZES[:2] if env == "table" else LATEX_SIZES):
                width = _estimated_width_pt(lay, size)
                tried.append(width)
                if width <= limit:
                    return _latex_float(lay, env, size, caption, label)
        if not any(c.kind == "delta" for c in lay.columns):
            break
    log.warning("the LaTeX table is about %.0f pt wide, wider than a page (%.0f pt) even at \\%s: show fewer "
                "metrics or datasets (--metric, --dataset) or split it", min(tried), TEXT_WIDTH_PT, LATEX_SIZES[-1][0])
    return _latex_float(lay, "table*", LATEX_SIZES[-1], caption, label)


def _label_rows(lay: Layout) -> list[list[str]]:
    rows = [list(lay.labels[row]) + [""] * (len(lay.label_names) - len(lay.labels[row])) for row in lay.rows]
    for labels, row in zip(rows, lay.rows):
        if row in lay.row_marks:  # '$^{2,3}$' survives pandas' latex-math escaping as math
            labels[0] += "$^{" + ",".join(map(str, lay.row_marks[row])) + "}$"
    return rows


def _seed_column(lay: Layout) -> list[str] | None:
    """Seeds per row when they differ between rows (else the caption says how many)."""
    if lay.uniform_seeds is not None or not lay.seed_counts:
        return None
    return ["/".join(map(str, sorted(lay.seed_counts.get(row, set())))) or "—" for row in lay.rows]


def _marked(lay: Layout) -> list[bool]:
    return [any(lay.entries.get((row, c), Entry()).marks for row in lay.rows) for c in lay.columns]


def _estimated_width_pt(lay: Layout, size: tuple[str, float, float]) -> float:
    """Natural width of the tabular in pt at one font size: an estimate with a margin, to choose the layout.

    Checked against pdflatex (tests/test_tables_latex.py compiles every variant and fails on an overfull box).
    """
    _, size_pt, tabcolsep = size
    em = size_pt * _OPTICAL.get(size_pt, 1.0)
    label_rows, seeds = _label_rows(lay), _seed_column(lay)
    widths = [max(_text_width_em(t) for t in [name] + [labels[j] for labels in label_rows]) * em
              for j, name in enumerate(lay.label_names)]
    groups: dict[str, float] = {}
    for col, mark in zip(lay.columns, _marked(lay)):
        head = col.head if col.kind == "ours" else ("paper" if col.kind == "paper" else "Δ")
        w = max(_number_format(lay, col).width_em(), _text_width_em(head)) * em + (0.6 * em if mark else 0.0)
        widths.append(w)
        groups[col.group] = groups.get(col.group, 0.0) + w + 2 * tabcolsep
    if seeds is not None:
        widths.append(max(_text_width_em(t) for t in ["Seeds", *seeds]) * em)
    total = sum(w + 2 * tabcolsep for w in widths) - 2 * tabcolsep  # @{} at both ends
    # A dataset name wider than its columns widens them.
    total += sum(max(0.0, _text_width_em(g) * em + 2 * tabcolsep - w) for g, w in groups.items())
    return total * 1.10


#: Computer Modern's small optical sizes are relatively wider: effective em per point of font size.
_OPTICAL = {9.0: 1.0, 8.0: 1.04, 7.0: 1.12}


def _latex_float(lay: Layout, env: str, size: tuple[str, float, float], caption: str | None, label: str) -> str:
    import pandas as pd

    size_name, _, sep = size
    label_rows, seeds = _label_rows(lay), _seed_column(lay)
    formats = [_number_format(lay, c) for c in lay.columns]
    marked = _marked(lay)
    levels = 3 if any(c.kind != "ours" for c in lay.columns) else 2

    def head(col: Column) -> tuple[str, ...]:
        sub = {"ours": "ours", "paper": "paper", "delta": "Δ"}[col.kind]
        return (col.group, col.head, sub) if levels == 3 else (col.group, col.head)

    blank = ("",) * (levels - 1)
    keys = [blank + (name,) for name in lay.label_names] + [head(c) for c in lay.columns]
    data = [label_rows[i] + [_latex_number(lay.entries.get((row, c), Entry(blank=True)), c) for c in lay.columns]
            for i, row in enumerate(lay.rows)]
    if seeds is not None:
        keys.append(blank + ("Seeds",))
        data = [r + [s] for r, s in zip(data, seeds)]
    # Header and label texts are escaped by pandas (latex-math keeps $...$): give it their Unicode-free form.
    keys = [tuple(_tex_source(k) for k in key) for key in keys]
    data = [[_tex_source(v) if j < len(lay.label_names) else v for j, v in enumerate(r)] for r in data]
    frame = pd.DataFrame(data, columns=pd.MultiIndex.from_tuples(keys))
    n_labels = len(lay.label_names)
    bold_mask = pd.DataFrame("", index=frame.index, columns=frame.columns)
    for i, row in enumerate(lay.rows):
        for j, col in enumerate(lay.columns):
            if lay.entries.get((row, col), Entry()).bold:
                bold_mask.iloc[i, n_labels + j] = "bfseries: ;"
    text_cols = list(frame.columns[:n_labels]) + ([frame.columns[-1]] if seeds is not None else [])
    column_format = "@{}" + "l" * n_labels
    for fmt, mark in zip(formats, marked):
        column_format += (f"S[table-format={fmt.spec()},uncertainty-mode=separate,detect-weight,mode=text"
                          + (",retain-explicit-plus" if fmt.sign == "+" else "") + "]")
        if mark:
            column_format += r"!{\hspace{0.6em}}"
    column_format += ("c" if seeds is not None else "") + "@{}"
    styles = [{"selector": "vspace", "props": ":{0.5ex};"}, {"selector": size_name, "props": ":;"}]
    if sep != 6.0:
        styles.append({"selector": "setlength", "props": f":{{\\tabcolsep}}{{{sep:g}pt}};"})
    styler = (frame.style.hide(axis="index")
              .format(escape="latex-math", subset=text_cols)
              .format_index(escape="latex-math", axis=1)
              .apply(lambda _: bold_mask, axis=None)
              .set_table_styles(styles, overwrite=False))
    cap = caption or latex_escape(". ".join(t.rstrip(".") for t in (lay.title, _seeds_text(lay)) if t) + ".")
    tex = styler.to_latex(column_format=column_format, hrules=True, caption=cap, label=label, environment=env,
                          position="t", position_float="centering", multicol_align="c", siunitx=True)
    tex = _add_cmidrules(tex, lay.columns, n_labels)
    notes = [latex_escape(t) for t in lay.notes] + [f"$^{{{i}}}$ {latex_escape(t)}"
                                                      for i, t in enumerate(lay.footnotes, 1)]
    if notes:
        block = "\\par\\smallskip\n{\\footnotesize\\raggedright\n" + "\\par\n".join(notes) + "\\par}\n"
        tex = tex.replace(f"\\end{{{env}}}", block + f"\\end{{{env}}}")
    return tex


def _tex_source(text: str) -> str:
    """Header text with its Unicode symbols as LaTeX math, ready for pandas' latex-math escaping."""
    return "".join(_LATEX_SYMBOLS.get(ch, ch) for ch in str(text))


def _add_cmidrules(tex: str, columns: list[Column], n_labels: int) -> str:
    """A \\cmidrule under each dataset's spanning header (booktabs), after the first header row."""
    spans, start = [], n_labels + 1
    for group in dict.fromkeys(c.group for c in columns):
        width = sum(1 for c in columns if c.group == group)
        spans.append(f"\\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    lines = tex.split("\n")
    top = lines.index("\\toprule")
    lines.insert(top + 2, " ".join(spans))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ CSV
def to_csv(table: Table) -> str:
    """The long-form cells as CSV (one row per row × dataset × metric; machine-readable)."""
    cells = table.cells.copy()
    for col in ("seeds", "epochs", "marks", "values", "labels", "published_marks"):
        if col in cells:
            cells[col] = [" ".join(map(str, v)) for v in cells[col]]
    cells["footnotes"] = [" | ".join(table.footnotes[m - 1] for m in marks) if marks else ""
                          for marks in table.cells["marks"]]
    return cells.drop(columns=["marks"]).to_csv(index=False)


FORMATS = {"md": to_markdown, "latex": to_latex, "csv": to_csv}


def render(table: Table, fmt: str = "md") -> str:
    """Render a table as md, latex or csv: every table of bench (runs, studies) goes through here."""
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
