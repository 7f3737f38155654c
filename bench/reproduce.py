"""`bench reproduce PAPER:TABLE`: the runs that cover one published table, their cost, and the table rebuilt.

Three stages, each a plain function:
1. `plan` reads the table's rows from `results/published/`, turns every number bench can score into a cell,
   and groups the cells into (method, dataset, direction, setting, seed) runs: the same configs, folders and
   MLflow runs as `bench run` (a finished run is kept, never retrained). Cells bench cannot reproduce (a
   method it does not implement, a published-only number, an ablation without a bench switch) stay in the
   plan with the reason. Each run's cost: its iterations, and GPU-hours where a measured s/iter is known.
2. `execute` runs or resumes the planned runs one after another through `bench.runner.run_one`.
3. `collect` reads every run's scores back (`metrics.json`), adds the 95 % intervals, the protocol spread
   (bench.spread: the saved images re-scored under the choices papers differ on) and a verdict per cell
   (bench.verdicts), as a `ReproTable` that renders to Markdown, CSV or JSON (and `bench report` to HTML).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.errors import BenchError, UsageError, closest
from bench.metrics import catalog

log = logging.getLogger(__name__)

PRESETS = ("paper", "smoke")
DEFAULT_SEEDS = (0, 1, 2)


# ------------------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class TableRef:
    """A published table: `qsattn2022:1` = paper qsattn2022, table 1."""

    paper: str
    table: str

    def __str__(self) -> str:
        return f"{self.paper}:{self.table}"

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.paper}_{self.table}")


def parse_ref(text: str, published=None) -> TableRef:
    """'paper:table' -> TableRef, checked against the published rows (UsageError naming what exists)."""
    from bench.published import load as load_published

    paper, sep, table = str(text).partition(":")
    if not sep or not paper or not table:
        raise UsageError(f"{text!r}: give PAPER:TABLE, e.g. qsattn2022:1 (see results/published/README.md)")
    pub = load_published() if published is None else published
    papers = sorted(set(pub["paper"]))
    if paper not in papers:
        raise UsageError(f"unknown paper {paper!r}{closest(paper, papers)}; published: {', '.join(papers)}")
    tables = sorted(set(pub[pub["paper"] == paper]["table"]), key=_natural)
    if table not in tables:
        raise UsageError(f"{paper} has no table {table!r}{closest(table, tables)}; its tables: {', '.join(tables)}")
    return TableRef(paper, table)


def _natural(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(text)))


@dataclass(frozen=True)
class Cell:
    """One published number of the table, and what bench can do about it."""

    method: str
    variant: str
    setting: str
    dataset: str
    direction: str
    metric: str
    published: float | None  # in bench's unit (None: the unit cannot be converted)
    unit: str
    source: str
    protocol_note: str
    #: Why bench does not reproduce this cell ("" = it does).
    skip: str = ""

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.method, self.setting, self.dataset, self.direction, self.metric)


@dataclass
class PlannedRun:
    """One (method, dataset, direction, setting, seed) run, its config and its cost."""

    cfg: Any  # RunConfig
    setting: str
    #: The run's scores for the reverse direction cover cells too (two-way methods).
    directions: tuple[str, ...]
    iterations: int
    sec_per_iter: float | None
    sec_per_iter_source: str
    status: str  # new | resume | finished

    @property
    def gpu_hours(self) -> float | None:
        return None if self.sec_per_iter is None else self.iterations * self.sec_per_iter / 3600.0

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.run_dir)


@dataclass
class Plan:
    """The runs that cover a published table, and the cells they cannot cover (with the reason)."""

    ref: TableRef
    preset: str
    seeds: tuple[int, ...]
    cells: list[Cell]
    runs: list[PlannedRun]

    def runs_for(self, cell: Cell) -> list[PlannedRun]:
        """The seed runs whose scores answer `cell` (empty for skipped cells)."""
        if cell.skip:
            return []
        return [r for r in self.runs if r.cfg.method == cell.method and r.cfg.dataset == cell.dataset
                and r.setting == cell.setting and cell.direction in r.directions]

    def text(self) -> str:
        """The plan as printed before anything starts: runs, their status and cost, then skipped cells."""
        lines = [f"Plan for {self.ref} ({self.preset} preset, seeds {' '.join(map(str, self.seeds))}): "
                 f"{sum(1 for c in self.cells if not c.skip)} of {len(self.cells)} published numbers to reproduce, "
                 f"{len(self.runs)} run(s)."]
        if self.runs:
            lines.append("")
            lines.append("| run | dataset | seed | status | iterations | s/iter | GPU-hours |")
            lines.append("|:--|:--|--:|:--|--:|--:|--:|")
            from bench.tables import dataset_label

            for r in self.runs:
                name = r.cfg.method + (f" [{r.setting}]" if r.setting else "")
                spi = f"{r.sec_per_iter:g}" if r.sec_per_iter is not None else "unknown"
                gh = f"{r.gpu_hours:.1f}" if r.gpu_hours is not None else "—"
                lines.append(f"| {name} | {', '.join(dataset_label(r.cfg.dataset, d) for d in r.directions)} | "
                             f"{r.cfg.seed} | {r.status} | "
                             f"{r.iterations:,} | {spi} | {gh} |")
            todo = [r for r in self.runs if r.status in ("new", "resume")]
            blocked = [r for r in self.runs if r.status == STATUS_OTHER]
            iters = sum(r.iterations for r in todo)
            known = [r.gpu_hours for r in todo if r.gpu_hours is not None]
            unknown = sum(1 for r in todo if r.gpu_hours is None)
            total = f"{sum(known):.1f} GPU-hours" + (f" + {unknown} run(s) of unknown speed" if unknown else "")
            lines.append("")
            lines.append(f"To train: {len(todo)} run(s), {iters:,} iterations, {total if known else 'GPU-hours unknown'}"
                         f"; {sum(1 for r in self.runs if r.status == 'finished')} finished run(s) kept as they are.")
            if blocked:
                lines.append(f"{len(blocked)} run folder(s) hold runs with other settings (e.g. another preset): "
                             "neither reused nor overwritten; choose another --out to run them.")
            sources = sorted({r.sec_per_iter_source for r in self.runs if r.sec_per_iter_source})
            for s in sources:
                lines.append(f"s/iter: {s}")
        skipped: dict[str, list[str]] = {}
        for c in self.cells:
            if c.skip:
                skipped.setdefault(c.skip, []).append(f"{c.method} {c.dataset} {c.metric}")
        if skipped:
            lines.append("")
            lines.append("Not reproduced here:")
            for reason, what in skipped.items():
                shown = ", ".join(what[:6]) + (f" (+{len(what) - 6} more)" if len(what) > 6 else "")
                lines.append(f"- {reason}: {shown}")
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ planning
def published_cells(ref: TableRef, *, datasets: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                    published=None) -> list[Cell]:
    """The table's rows as cells, each with the reason bench cannot reproduce it ('' when it can)."""
    import methods as registry
    from bench.data.registry import DATASETS
    from bench.published import in_bench_unit, parse_setting
    from bench.published import load as load_published

    pub = load_published(paper=ref.paper, table=ref.table) if published is None else \
        published[(published["paper"] == ref.paper) & (published["table"] == ref.table)]
    if datasets:
        unknown = sorted(set(datasets) - set(pub["dataset"]))
        if unknown:
            have = sorted(set(pub["dataset"]))
            raise UsageError(f"{ref} has no numbers for dataset(s) {', '.join(unknown)}"
                             f"{closest(unknown[0], have)}; its datasets: {', '.join(have)}")
        pub = pub[pub["dataset"].isin(datasets)]
    if methods:
        unknown = sorted(set(methods) - set(pub["method"]))
        if unknown:
            have = sorted(set(pub["method"]))
            raise UsageError(f"{ref} has no numbers for method(s) {', '.join(unknown)}"
                             f"{closest(unknown[0], have)}; its methods: {', '.join(have)}")
        pub = pub[pub["method"].isin(methods)]
    cells = []
    for row in pub.to_dict("records"):
        skip = ""
        metric = catalog.get(row["metric"])
        if row["method"] not in registry.names():
            skip = "method not implemented in bench"
        elif not metric.scored:
            skip = f"published-only number ({metric.kind.replace('_', ' ')}): bench does not measure it per run"
        elif row["dataset"] not in DATASETS or row["dataset"] == "any":
            skip = f"dataset {row['dataset']!r} is not in bench's registry"
        else:
            cls = registry.get(row["method"])
            fields = {f for f in getattr(cls.Config, "__dataclass_fields__", {})}
            for key in parse_setting(row["setting"]):
                if key not in fields:
                    skip = f"no bench switch for the ablation setting {row['setting']!r}"
                    break
        value = in_bench_unit(row)
        if not skip and value is None:
            skip = f"published unit {row['unit']!r} cannot be converted to bench's {metric.unit!r}"
        cells.append(Cell(method=row["method"], variant=row["variant"], setting=row["setting"],
                          dataset=row["dataset"], direction=row["direction"], metric=row["metric"], published=value,
                          unit=row["unit"], source=row["source"], protocol_note=row["protocol_note"], skip=skip))
    return cells


def setting_suffix(setting: str) -> str | None:
    """A run-folder suffix for an ablation setting ('num_patches=64' -> 'num_patches-64'); None for defaults."""
    if not setting:
        return None
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", setting.replace("=", "-")).strip("-")


def plan(ref: TableRef, *, seeds: Sequence[int] = DEFAULT_SEEDS, preset: str = "paper",
         datasets: Sequence[str] | None = None, methods: Sequence[str] | None = None,
         overrides: Mapping[str, Any] | None = None, data_root: str | None = None, out: str = "runs",
         device: str | None = None, tracking_uri: str | None = None, inception_weights: str | None = None,
         seg_weights: str | None = None, published=None) -> Plan:
    """The cells of a published table and the runs that cover them, with their cost."""
    import methods as registry
    from bench.data import get_spec
    from bench.published import parse_setting
    from bench.runner import build_run_config, method_fits

    if preset not in PRESETS:
        raise UsageError(f"--preset {preset!r}: use one of {', '.join(PRESETS)}")
    if not seeds:
        raise UsageError("--seeds needs at least one seed")
    cells = published_cells(ref, datasets=datasets, methods=methods, published=published)
    if data_root and len({c.dataset for c in cells if not c.skip}) > 1:
        raise UsageError("--data-root points at one dataset's folder; with it, choose that dataset with --datasets")
    groups: dict[tuple[str, str, str, str], set[str]] = {}  # (method, dataset, run direction, setting) -> cells' dirs
    final: list[Cell] = []
    for c in cells:
        if not c.skip:
            reason = method_fits(c.method, c.dataset)
            spec = get_spec(c.dataset)
            try:
                direction = spec.normalize_direction(c.direction)
            except UsageError as exc:
                reason = reason or str(exc)
                direction = c.direction
            if reason:
                c = Cell(**{**asdict(c), "skip": reason})
            else:
                run_dir = direction
                default = spec.normalize_direction(None)
                if direction != default and registry.get(c.method).two_way:
                    run_dir = default  # a two-way run scores the reverse direction too
                groups.setdefault((c.method, c.dataset, run_dir, c.setting), set()).add(direction)
        final.append(c)
    speeds = _published_speeds(published)
    runs: list[PlannedRun] = []
    for (method, dataset, run_direction, setting), directions in groups.items():
        spec = get_spec(dataset)
        over = dict(overrides or {})
        over.update({k: v for k, v in parse_setting(setting).items()})
        suffix_parts = [p for p in (setting_suffix(setting),
                                    None if run_direction == spec.normalize_direction(None) else run_direction) if p]
        for seed in seeds:
            cfg = build_run_config(method, dataset, seed, preset, over, data_root=data_root, direction=run_direction,
                                   out=out, device=device, tracking_uri=tracking_uri,
                                   inception_weights=inception_weights, seg_weights=seg_weights,
                                   run_name_suffix="-".join(suffix_parts) or None)
            spi, spi_source = speeds.get(method, (None, ""))
            if preset != "paper":
                spi, spi_source = None, ""  # the papers' s/iter is for 256 px on their GPUs
            runs.append(PlannedRun(cfg=cfg, setting=setting, directions=tuple(sorted(directions)),
                                   iterations=estimate_iterations(cfg), sec_per_iter=spi,
                                   sec_per_iter_source=spi_source, status=run_status(Path(cfg.run_dir), cfg)))
    return Plan(ref=ref, preset=preset, seeds=tuple(seeds), cells=final, runs=runs)


STATUS_OTHER = "other settings"


def config_difference(cfg) -> str:
    """'' when the run folder is empty or holds a run of `cfg`'s settings; else what differs (as `bench run
    --resume` compares them: method, preset, method/data/train/eval settings, device and progress aside)."""
    from bench.config import RESUMABLE_TRAIN_FIELDS

    path = Path(cfg.run_dir) / "config.json"
    if not path.is_file():
        return ""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return f"{path} is unreadable"
    current = json.loads(json.dumps(cfg.to_dict(), default=str))
    for doc in (saved, current):
        doc["train"] = {k: v for k, v in (doc.get("train") or {}).items() if k not in RESUMABLE_TRAIN_FIELDS}
    diffs = [k for k in ("method", "preset", "method_cfg", "data", "train", "eval") if saved.get(k) != current.get(k)]
    if not diffs:
        return ""
    what = f"preset {saved.get('preset')!r}" if "preset" in diffs else "its " + ", ".join(diffs) + " settings"
    return f"{cfg.run_dir} holds a run with other settings ({what}); use another --out for this one"


def run_status(run_dir: Path, cfg=None) -> str:
    """new (nothing there), resume (started), finished (metrics.json written: kept, never retrained), or
    'other settings' (the folder holds a run of another preset or config: neither reused nor overwritten)."""
    if cfg is not None and config_difference(cfg):
        return STATUS_OTHER
    if (run_dir / "metrics.json").is_file():
        return "finished"
    return "resume" if (run_dir / "config.json").is_file() else "new"


def _published_speeds(published=None) -> dict[str, tuple[float, str]]:
    """method -> (s/iter, where it was measured) from the published sec_per_iter rows (the papers' GPUs)."""
    from bench.published import load as load_published

    pub = load_published("sec_per_iter") if published is None else published[published["metric"] == "sec_per_iter"]
    out: dict[str, tuple[float, str]] = {}
    for row in pub.sort_values(["paper", "table"]).to_dict("records"):
        out.setdefault(row["method"], (float(row["value"]), f"{row['paper']} Table {row['table']} "
                                       f"({row['method']} {row['value']:g} s/iter on the paper's GPU)"))
    return out


def train_items(cfg) -> int:
    """Training items per epoch: the data on disk when it can be read, else the registry's official counts."""
    from bench.data import get_spec, load_pairs

    mc = cfg.method_cfg
    try:
        import methods as registry

        ds = load_pairs(cfg.dataset, "train", root=cfg.data.root, direction=cfg.data.direction,
                        paired=registry.get(cfg.method).paired, load_size=mc.load_size, crop_size=mc.crop_size,
                        flip=mc.flip, seed=cfg.seed)
        n = len(ds)
    except BenchError:
        counts = get_spec(cfg.dataset).counts.get("train", {})
        n = max(counts.values()) if counts else 0
    return min(n, cfg.data.max_train) if cfg.data.max_train else n


def estimate_iterations(cfg) -> int:
    """Iterations the run will train: the schedule's epochs x batches, or the method's iteration budget."""
    import methods as registry

    from bench.train import schedule_length

    # The loop's own rule (bench.train.schedule_length): NICE-GAN/MUNIT run their budget whatever the dataset size.
    length, unit = registry.get(cfg.method).schedule_length(cfg.method_cfg)
    return schedule_length(cfg, train_items(cfg), length if unit == "iterations" else 0).iterations


# ------------------------------------------------------------------------------------------ running
@dataclass
class Executed:
    """What `execute` did with each planned run."""

    trained: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def execute(the_plan: Plan, progress=None, run_fn=None) -> Executed:
    """Run or resume every planned run through the same code path as `bench run` (finished runs are kept)."""
    from bench.runner import run_one

    run_fn = run_fn or run_one
    done = Executed()
    for r in the_plan.runs:
        name = f"{r.cfg.dataset}/{r.cfg.method}/{r.run_dir.name}"
        if r.status == "finished":
            done.kept.append(name)
            continue
        if r.status == STATUS_OTHER:
            done.failed[name] = config_difference(r.cfg)
            continue
        try:
            # A bench.progress Reporter hands each run its own handle (run k of N).
            handle = progress.run(name) if hasattr(progress, "run") else progress
            run_fn(r.cfg, resume=(r.run_dir / "config.json").is_file(), progress=handle)
            done.trained.append(name)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one failing run must not stop the others; the table says why its cells are empty
            log.error("%s failed: %s", name, exc)
            done.failed[name] = f"{type(exc).__name__}: {exc}"
        r.status = run_status(r.run_dir, r.cfg)
    return done


# ------------------------------------------------------------------------------------------ collecting
@dataclass
class SeedScore:
    """One run's number for one cell, and what it was measured under."""

    seed: int
    run_dir: str
    value: float | None
    unavailable: str
    fingerprint: dict[str, Any]
    section: str  # last | best | reverse
    epoch: int | None
    preset: str
    precision: str
    #: Output size the run translated at (its crop size).
    image_size: int | None = None


def seed_scores(run: PlannedRun, cell: Cell, select: str = "last") -> SeedScore:
    """The number a finished run gives a cell (its official last-epoch score, or the reverse direction's)."""
    from bench.data import get_spec

    run_dir = run.run_dir
    doc_path = run_dir / "metrics.json"
    other = config_difference(run.cfg) if getattr(run, "status", "") == STATUS_OTHER else ""
    common = dict(preset=run.cfg.preset, precision=_precision(run.cfg), image_size=int(run.cfg.method_cfg.crop_size))
    if other or not doc_path.is_file():
        reason = other or ("the run did not finish" if (run_dir / "config.json").is_file()
                           else "the run has not been trained")
        return SeedScore(run.cfg.seed, str(run_dir), None, reason, {}, select, None, **common)
    doc = json.loads(doc_path.read_text())
    spec = get_spec(run.cfg.dataset)
    run_direction = spec.normalize_direction(run.cfg.data.direction)
    section = select if spec.normalize_direction(cell.direction) == run_direction else "reverse"
    sec = doc.get(section) or {}
    res = (sec.get("metrics") or {}).get(cell.metric)
    epoch = sec.get("epoch", (doc.get("last") or {}).get("epoch"))
    if res is None:
        reason = f"{cell.metric} was not scored by this run" + ("" if sec else f" ({section} section missing)")
        return SeedScore(run.cfg.seed, str(run_dir), None, reason, {}, section, epoch, **common)
    reason = (res.get("unavailable") or "").replace(str(run_dir), "<run>")
    return SeedScore(run.cfg.seed, str(run_dir), res.get("value"), reason, dict(res.get("fingerprint") or {}),
                     section, epoch, **common)


def _precision(cfg) -> str:
    """The run's numeric precision (fp32 unless a train.precision switch says otherwise)."""
    return str(getattr(cfg.train, "precision", "fp32") or "fp32")


@dataclass
class CellResult:
    """A cell with its reproduced numbers, intervals, protocol spread and verdict."""

    cell: Cell
    scores: list[SeedScore]
    mean: float | None = None
    std: float | None = None
    n: int = 0
    t_interval: tuple[float, float] | None = None
    bootstrap_interval: tuple[float, float] | None = None
    interval_note: str = ""
    spread: dict[str, Any] = field(default_factory=dict)  # bench.spread.Spread.to_dict()
    verdict: str = ""  # reproduced | not reproduced | not comparable | not reproduced here
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cell"] = asdict(self.cell)
        return d


@dataclass
class ReproTable:
    """The rebuilt table: one CellResult per published number, and how it was made."""

    ref: TableRef
    preset: str
    seeds: tuple[int, ...]
    results: list[CellResult]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"paper": self.ref.paper, "table": self.ref.table, "preset": self.preset, "seeds": list(self.seeds),
                "results": [r.to_dict() for r in self.results], "notes": self.notes}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ReproTable":
        results = []
        for r in d["results"]:
            scores = [SeedScore(**s) for s in r["scores"]]
            fields_ = {k: v for k, v in r.items() if k not in ("cell", "scores")}
            for k in ("t_interval", "bootstrap_interval"):
                if fields_.get(k) is not None:
                    fields_[k] = tuple(fields_[k])
            results.append(CellResult(cell=Cell(**r["cell"]), scores=scores, **fields_))
        return cls(TableRef(d["paper"], str(d["table"])), d["preset"], tuple(d["seeds"]), results, list(d["notes"]))


def collect(the_plan: Plan, *, bootstrap: int = 200, spread: bool = True, device: str = "cpu") -> ReproTable:
    """Scores, intervals, protocol spread and verdict of every cell of the plan."""
    from bench import spread as spread_mod
    from bench import verdicts

    results = []
    for cell in the_plan.cells:
        runs = the_plan.runs_for(cell)
        res = CellResult(cell=cell, scores=[seed_scores(r, cell) for r in runs])
        if cell.skip:
            res.verdict, res.reason = "not reproduced here", cell.skip
            results.append(res)
            continue
        values = [s.value for s in res.scores if s.value is not None and math.isfinite(s.value)]
        res.n = len(values)
        if values:
            res.mean, res.std = verdicts.mean_std(values)
            res.t_interval = verdicts.t_interval(values)
            if res.t_interval is None:
                res.interval_note = "one seed: no interval over seeds"
            if cell.metric in spread_mod.BOOTSTRAP_METRICS and bootstrap > 0:
                try:
                    res.bootstrap_interval = spread_mod.bootstrap_interval(
                        [r for r, s in zip(runs, res.scores) if s.value is not None], cell, n_boot=bootstrap,
                        device=device)
                except BenchError as exc:
                    res.interval_note = (res.interval_note + "; " if res.interval_note else "") + \
                        f"no bootstrap: {exc}"
            if spread and cell.metric in spread_mod.SPREAD_METRICS:
                res.spread = spread_mod.protocol_spread(
                    [r for r, s in zip(runs, res.scores) if s.value is not None], cell, device=device).to_dict()
        res.verdict, res.reason = verdicts.verdict(res)
        results.append(res)
    notes = ["Reproduced numbers use the official protocol: last epoch, one fake per test input, every target "
             "test image as reference, pytorch-fid's resize, PNG outputs (bench.official)."]
    return ReproTable(the_plan.ref, the_plan.preset, the_plan.seeds, results, notes)


# ------------------------------------------------------------------------------------------ rendering
def _fmt(value: float | None, metric: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return catalog.get(metric).format(value)


def _interval(iv, metric: str) -> str:
    return "—" if not iv else f"[{_fmt(iv[0], metric)}, {_fmt(iv[1], metric)}]"


def spread_text(spread: Mapping[str, Any], metric: str) -> str:
    """'40.1..44.3 (resize: +3.2)' or the reason there is none."""
    if not spread:
        return "—"
    if spread.get("min") is None:
        return f"— ({spread.get('note') or 'no alternative could be scored'})"
    text = f"{_fmt(spread['min'], metric)}..{_fmt(spread['max'], metric)}"
    if spread.get("largest"):
        text += f" (largest: {spread['largest']} {spread['largest_delta']:+.{catalog.get(metric).decimals}f})"
    return text


def rows(table: ReproTable) -> list[dict[str, str]]:
    """One dict of display strings per cell (the columns every renderer shows)."""
    from bench.tables import dataset_label, method_label

    out = []
    for r in table.results:
        c, m = r.cell, r.cell.metric
        reproduced = "—" if r.mean is None else _fmt(r.mean, m) + (f" ± {_fmt(r.std, m)}" if r.n > 1 else "") + \
            f" (n={r.n})"
        name = method_label(c.method) + (f" [{c.setting}]" if c.setting else "")
        out.append({"method": name, "dataset": dataset_label(c.dataset, c.direction),
                    "metric": f"{catalog.get(m).label}{catalog.get(m).arrow}",
                    "published": _fmt(c.published, m), "reproduced": reproduced,
                    "ci_t": _interval(r.t_interval, m), "ci_boot": _interval(r.bootstrap_interval, m),
                    "spread": spread_text(r.spread, m), "verdict": r.verdict, "why": r.reason})
    return out


COLUMNS = (("method", "Method"), ("dataset", "Dataset"), ("metric", "Metric"), ("published", "Published"),
           ("reproduced", "Reproduced (mean ± std)"), ("ci_t", "95% CI (t, seeds)"),
           ("ci_boot", "95% CI (bootstrap, images)"), ("spread", "Protocol spread"), ("verdict", "Verdict"),
           ("why", "Why"))


def to_markdown(table: ReproTable) -> str:
    """The rebuilt table as GitHub Markdown, with the legend below."""
    lines = [f"### {table.ref} reproduced ({table.preset} preset, seeds {' '.join(map(str, table.seeds))})", "",
             "| " + " | ".join(h for _, h in COLUMNS) + " |",
             "|" + "|".join(":--" if k in ("method", "dataset", "metric", "verdict", "why") else "--:"
                            for k, _ in COLUMNS) + "|"]
    for row in rows(table):
        lines.append("| " + " | ".join(row[k].replace("|", "/") for k, _ in COLUMNS) + " |")
    lines += ["", "Reproduced = mean ± std over seeds of the official protocol's number; 95% CI (t) over seeds; "
              "95% CI (bootstrap) over test images, for FID/KID; protocol spread = min..max of the same images "
              "re-scored under the choices papers differ on (epoch, resize, JPEG, test-set count, reference set), "
              "with the choice that moves the number most. Reproduced = the published value inside the t interval "
              "widened by the spread.", ""]
    lines += [f"- {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


def to_csv(table: ReproTable) -> str:
    import pandas as pd

    frame = pd.DataFrame([{**row, "published_value": r.cell.published, "mean": r.mean, "std": r.std, "n": r.n,
                           "source": r.cell.source}
                          for row, r in zip(rows(table), table.results)])
    return frame.to_csv(index=False)


def to_json(table: ReproTable) -> str:
    return json.dumps(table.to_dict(), indent=1, default=str)


FORMATS = {"md": to_markdown, "csv": to_csv, "json": to_json}


def render(table: ReproTable, fmt: str = "md") -> str:
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    return FORMATS[fmt](table)


def result_path(ref: TableRef, preset: str, folder: str | Path = "results/reproduce") -> Path:
    """Where a reproduce table is saved (JSON; `bench report --reproduce` reads it)."""
    return Path(folder) / f"{ref.slug}.{preset}.json"


def save(table: ReproTable, folder: str | Path = "results/reproduce") -> list[Path]:
    """Write the table as JSON (for `bench report`) and Markdown beside it."""
    from bench.checkpoint import atomic_write_json

    path = result_path(table.ref, table.preset, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, table.to_dict())
    md = path.with_suffix(".md")
    md.write_text(to_markdown(table), encoding="utf-8")
    return [path, md]


def load(path: str | Path) -> ReproTable:
    from bench.errors import DataError

    try:
        return ReproTable.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a bench reproduce table ({exc}); rerun `bench reproduce PAPER:TABLE`") from None
