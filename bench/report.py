"""`bench report`: one self-contained HTML page for a dataset's runs or a `bench reproduce` table.

The page has the table with a verdict per cell (the same cells and verdicts as `bench reproduce`), the
metric-vs-epoch curves of every run (matplotlib, embedded as PNG data URIs), and side-by-side grids of the same
test inputs translated by each method and seed (thumbnails embedded as data URIs). Nothing is fetched when the
page is opened: it can be mailed or attached to an issue as one file.

Everything is read from the run folders (`runs/<dataset>/<method>/seed<N>/`: config.json, metrics.json,
history.json, eval/last/test/{inputs,outputs}/), so a report needs neither MLflow nor the weights.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

from bench.errors import DataError

log = logging.getLogger(__name__)

THUMB_PX = 128
VERDICT_CLASS = {"reproduced": "ok", "not reproduced": "bad", "not comparable": "nc", "not reproduced here": "skip"}


# ------------------------------------------------------------------------------------------ run folders
def _namespace(obj: Any) -> Any:
    if isinstance(obj, dict):
        return SimpleNamespace(**{k: _namespace(v) for k, v in obj.items()})
    return obj


@dataclass
class RunView:
    """A finished (or started) run folder, as the report and bench.spread read it."""

    cfg: Any  # config.json as attributes: .method, .dataset, .seed, .preset, .data.direction, .eval.*, ...
    setting: str
    run_dir: Path
    directions: tuple[str, ...] = ()
    status: str = "finished"

    @property
    def label(self) -> str:
        return f"{self.cfg.method}" + (f" [{self.setting}]" if self.setting else "") + f" s{self.cfg.seed}"


def read_run(run_dir: Path) -> RunView:
    """A run folder's config as a RunConfig-like object (run_dir pointing at the folder itself)."""
    doc = json.loads((run_dir / "config.json").read_text())
    doc.setdefault("train", {})
    cfg = _namespace(doc)
    cfg.run_dir = run_dir  # wherever the folder is now, not where it was started from
    return RunView(cfg=cfg, setting=doc.get("run_name_suffix") or "", run_dir=run_dir)


def dataset_runs(dataset: str, runs_root: str | Path = "runs", methods: Sequence[str] | None = None,
                 seeds: Sequence[int] | None = None) -> list[RunView]:
    """Every run folder of `dataset` under `runs_root` with a config.json (methods, seeds filter)."""
    root = Path(runs_root) / dataset
    if not root.is_dir():
        raise DataError(f"no run folders for dataset {dataset!r} under {Path(runs_root).resolve()} "
                        "(run `bench run --dataset ...` first, or pass --runs DIR)")
    out = []
    for cfg_file in sorted(root.glob("*/seed*/config.json")):
        run = read_run(cfg_file.parent)
        if methods and run.cfg.method not in methods:
            continue
        if seeds is not None and int(run.cfg.seed) not in set(seeds):
            continue
        run.status = "finished" if (run.run_dir / "metrics.json").is_file() else "unfinished"
        out.append(run)
    if not out:
        raise DataError(f"no run folders of {dataset!r} match under {root}")
    return out


# ------------------------------------------------------------------------------------------ the table
def dataset_table(dataset: str, runs: Sequence[RunView], *, bootstrap: int = 0, spread: bool = False,
                  device: str = "cpu"):
    """A `bench reproduce`-style table for the finished runs of one dataset, against each method's own paper."""
    from bench import reproduce
    from bench.data import get_spec
    from bench.published import in_bench_unit, pick
    from bench.published import load as load_published

    pub = load_published()
    spec = get_spec(dataset)
    cells, plan_runs = [], []
    seen = set()
    for run in runs:
        if run.status != "finished":
            continue
        doc = json.loads((run.run_dir / "metrics.json").read_text())
        direction = spec.normalize_direction(getattr(run.cfg.data, "direction", None))
        sections = [("last", direction)]
        if doc.get("reverse"):
            src, dst = spec.resolve_direction(direction)
            sections.append(("reverse", f"{dst}2{src}"))
        run.directions = tuple(d for _, d in sections)
        plan_runs.append(run)
        for section, d in sections:
            for metric in (doc.get(section) or {}).get("metrics", {}):
                key = (run.cfg.method, run.setting, d, metric)
                if key in seen:
                    continue
                seen.add(key)
                cand = pub[(pub["method"] == run.cfg.method) & (pub["dataset"] == dataset)
                           & (pub["direction"] == d) & (pub["metric"] == metric) & (pub["setting"] == "")]
                chosen, _ = pick(cand, run.cfg.method, None)
                value = in_bench_unit(chosen) if chosen else None
                cells.append(reproduce.Cell(
                    method=run.cfg.method, variant="", setting=run.setting, dataset=dataset, direction=d,
                    metric=metric, published=value, unit=chosen["unit"] if chosen else "",
                    source=f"{chosen['paper']} Table {chosen['table']}: {chosen['source']}" if chosen else "",
                    protocol_note=chosen["protocol_note"] if chosen else ""))
    the_plan = reproduce.Plan(ref=reproduce.TableRef("runs", dataset), preset=",".join(
        sorted({str(r.cfg.preset) for r in plan_runs})), seeds=tuple(sorted({int(r.cfg.seed) for r in plan_runs})),
        cells=cells, runs=plan_runs)
    table = reproduce.collect(the_plan, bootstrap=bootstrap, spread=spread, device=device)
    for r in table.results:
        if r.cell.published is None and r.verdict == "not comparable":
            rest = [p for p in r.reason.split("; ") if p != "no published value in bench's unit"]
            r.verdict = "no published value"
            r.reason = "; ".join(["no paper in results/published/ reports this cell"] + rest)
    table.notes = ["Published values: each method's own paper first (results/published/)."] + table.notes
    return table


# ------------------------------------------------------------------------------------------ figures
def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _thumb(path: Path, px: int = THUMB_PX) -> str:
    from PIL import Image

    img = Image.open(path).convert("RGB")
    img.thumbnail((px, px))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return _png_data_uri(buf.getvalue())


def curves_png(runs: Sequence[RunView], metric: str) -> bytes | None:
    """Metric vs epoch, one line per run (colour per method), from each run's history.json; None if no point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.metrics import catalog

    series = []
    for run in runs:
        hist = run.run_dir / "history.json"
        try:
            entries = json.loads(hist.read_text())
        except (OSError, ValueError):
            continue
        pts = [(int(e["epoch"]), float(e[metric])) for e in entries
               if isinstance(e.get(metric), (int, float)) and math.isfinite(float(e[metric]))]
        if pts:
            series.append((run, sorted(pts)))
    if not series:
        return None
    methods = list(dict.fromkeys(r.cfg.method + (f" [{r.setting}]" if r.setting else "") for r, _ in series))
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    for run, pts in series:
        name = run.cfg.method + (f" [{run.setting}]" if run.setting else "")
        i = methods.index(name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, lw=1.2, color=colours(i % 10),
                label=f"{name} seed {run.cfg.seed}")
    m = catalog.get(metric)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{m.label} ({'higher' if m.higher_is_better else 'lower'} is better)")
    ax.set_title(f"in-training {m.label} on the held-out test subset")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def grid_html(runs: Sequence[RunView], n_images: int = 4) -> str:
    """The same test inputs (rows) translated by every run (columns), thumbnails embedded."""
    shown = [r for r in runs if (r.run_dir / "eval" / "last" / "test" / "outputs").is_dir()]
    if not shown:
        return "<p class='note'>No saved test translations (eval/last/test/outputs) in these runs.</p>"
    stems = None
    for r in shown:
        have = {p.stem for p in (r.run_dir / "eval" / "last" / "test" / "outputs").glob("*.png")}
        stems = have if stems is None else stems & have
    stems = sorted(stems or [])[:n_images]
    if not stems:
        return "<p class='note'>The runs share no translated test input.</p>"
    inputs_dir = shown[0].run_dir / "eval" / "last" / "test" / "inputs"
    # One row per run (methods and seeds stack downwards), one column per test input; the inputs on top.
    head = "<tr><th></th>" + "".join(f"<th>{html.escape(s)}</th>" for s in stems) + "</tr>"
    rows_html = ["<tr><th>input</th>" + "".join(
        f"<td><img alt='input {html.escape(s)}' src='{_thumb(inputs_dir / (s + '.png'))}'></td>"
        if (inputs_dir / f"{s}.png").is_file() else "<td>—</td>" for s in stems) + "</tr>"]
    for r in shown:
        out_dir = r.run_dir / "eval" / "last" / "test" / "outputs"
        rows_html.append(f"<tr><th>{html.escape(r.label)}</th>" + "".join(
            f"<td><img alt='{html.escape(r.label)} {html.escape(s)}' src='{_thumb(out_dir / (s + '.png'))}'></td>"
            for s in stems) + "</tr>")
    return (f"<table class='grid'><caption>last epoch; the first {len(stems)} test inputs every run translated"
            f"</caption>{head}{''.join(rows_html)}</table>")


# ------------------------------------------------------------------------------------------ the page
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
p.meta,p.note,caption{color:#555;font-size:13px}
table.results{border-collapse:collapse;font-size:13px;width:100%}
table.results th,table.results td{border:1px solid #ddd;padding:4px 6px;vertical-align:top}
table.results th{background:#f4f4f4;text-align:left} td.num{text-align:right;white-space:nowrap}
td.v{font-weight:600;white-space:nowrap} tr.ok td.v{color:#116329;background:#e6f4ea}
tr.bad td.v{color:#a40e26;background:#fde7e9} tr.nc td.v{color:#7a4d00;background:#fff4d6}
tr.skip td{color:#888} td.why{font-size:12px;color:#444;max-width:420px}
table.grid{border-collapse:collapse} table.grid td,table.grid th{padding:3px;font-size:11px;text-align:center}
table.grid th{text-align:right;white-space:nowrap;font-weight:600}
table.grid img{display:block;width:THUMBpx;height:auto;image-rendering:auto}
img.curve{max-width:100%;border:1px solid #eee}
""".replace("THUMB", str(THUMB_PX))


@dataclass
class Page:
    """The parts of a report page."""

    title: str
    table: Any  # bench.reproduce.ReproTable
    runs: list[RunView] = field(default_factory=list)
    curves: dict[str, bytes] = field(default_factory=dict)
    grid: str = ""
    meta: str = ""


def table_html(table) -> str:
    from bench.reproduce import COLUMNS, rows

    num = {"published", "reproduced", "ci_t", "ci_boot", "spread"}
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for _, h in COLUMNS) + "</tr>"
    body = []
    for row, res in zip(rows(table), table.results):
        cls = VERDICT_CLASS.get(res.verdict, "")
        tds = []
        for k, _ in COLUMNS:
            css = "num" if k in num else ("v" if k == "verdict" else ("why" if k == "why" else ""))
            tds.append(f"<td class='{css}'>{html.escape(row[k])}</td>")
        body.append(f"<tr class='{cls}'>" + "".join(tds) + "</tr>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in table.notes)
    return (f"<table class='results'>{head}{''.join(body)}</table>"
            "<p class='note'>Reproduced = mean ± std over seeds (official protocol: last epoch, one fake per input); "
            "95% CI (t) over seeds; 95% CI (bootstrap) over test images, FID/KID; protocol spread = min..max of the "
            "saved images re-scored under the choices papers differ on, and the choice that moves the number most."
            f"</p><ul class='note'>{notes}</ul>")


def render(page: Page) -> str:
    """The page as one HTML document (no external resource)."""
    from bench.metrics import catalog

    curves = "".join(
        f"<figure><img class='curve' alt='{html.escape(catalog.get(m).label)} vs epoch' src='{_png_data_uri(png)}'>"
        f"</figure>" for m, png in page.curves.items()) or "<p class='note'>No in-training scores in history.json.</p>"
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(page.title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(page.title)}</h1><p class='meta'>{html.escape(page.meta)}</p>"
            f"<h2>Results</h2>{table_html(page.table)}"
            f"<h2>Metric vs epoch</h2>{curves}"
            f"<h2>Same test inputs across methods and seeds</h2>{page.grid}"
            "</body></html>\n")


def _runs_of_table(table) -> list[RunView]:
    """The run folders a saved reproduce table drew its numbers from."""
    dirs = list(dict.fromkeys(Path(s.run_dir) for r in table.results for s in r.scores))
    return [read_run(d) for d in dirs if (d / "config.json").is_file()]


def build_page(*, dataset: str | None = None, reproduce_table=None, runs_root: str | Path = "runs",
               methods: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
               metrics: Sequence[str] = ("fid",), n_images: int = 4, spread: bool = False,
               bootstrap: int = 0) -> Page:
    """A report for a dataset's run folders, or for a table saved by `bench reproduce`."""
    import datetime

    if (dataset is None) == (reproduce_table is None):
        from bench.errors import UsageError

        raise UsageError("give --dataset NAME or --reproduce PAPER:TABLE (one of them)")
    if reproduce_table is not None:
        table = reproduce_table
        runs = _runs_of_table(table)
        if methods:
            runs = [r for r in runs if r.cfg.method in methods]
        title = f"bench reproduce {table.ref} ({table.preset} preset)"
    else:
        runs = dataset_runs(dataset, runs_root, methods, seeds)
        table = dataset_table(dataset, runs, bootstrap=bootstrap, spread=spread)
        title = f"bench report: {dataset}"
    curves = {}
    for m in metrics:
        png = curves_png(runs, m)
        if png:
            curves[m] = png
    meta = (f"{len(runs)} run folder(s); generated {datetime.datetime.now().isoformat(timespec='seconds')} "
            "by bench report")
    return Page(title=title, table=table, runs=list(runs), curves=curves, grid=grid_html(runs, n_images), meta=meta)


def write(page: Page, out: str | Path) -> Path:
    """Write the page atomically; returns its path."""
    from bench.checkpoint import atomic_write_bytes

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, render(page).encode("utf-8"))
    return out
