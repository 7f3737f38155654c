"""Published numbers: the CSV schema of `results/published/`, loading, validation, and picking a row per cell.

One row per (paper, table, method, variant, setting, dataset, direction, metric) with its value, unit, protocol
note and source. `unit` is how the paper printed the number; empty means "in bench's unit for that metric"
(bench.metrics.catalog), any other unit is converted where a factor is known and never compared otherwise.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.errors import DataError, closest
from bench.metrics import catalog

COLUMNS = ("paper", "table", "method", "variant", "setting", "dataset", "direction", "metric", "unit",
                     "value", "protocol_note", "source")
REQUIRED = ("paper", "table", "method", "dataset", "direction", "metric", "value", "source")
UNITS = ("", "%", "fraction", "s/iter", "h", "M", "GB", "dB", "×100", "×1e3")
KEY = ("paper", "table", "method", "variant", "setting", "dataset", "direction", "metric")


def published_dir(path: str | os.PathLike | None = None) -> Path:
    """Folder of the published-number CSVs: the argument, else $BENCH_PUBLISHED_DIR, else results/published/."""
    if path is not None:
        return Path(path)
    env = os.environ.get("BENCH_PUBLISHED_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "results" / "published"


def validate(df, origin: str) -> None:
    """Check the schema and values of published rows; DataError naming the file and row on the first problem."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{origin}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    extra = [c for c in df.columns if c not in COLUMNS]
    if extra:
        raise DataError(f"{origin}: unknown column(s) {', '.join(extra)}; expected {', '.join(COLUMNS)}")
    for pos, (_, row) in enumerate(df.iterrows()):
        where = f"{origin} line {pos + 2}"  # +2: the header line, and lines count from 1
        for col in REQUIRED:
            if str(row[col]).strip() == "":
                raise DataError(f"{where}: empty {col!r}")
        if row["metric"] not in catalog.CATALOG:
            raise DataError(f"{where}: unknown metric {row['metric']!r}{closest(str(row['metric']), catalog.CATALOG)}")
        if row["unit"] not in UNITS:
            raise DataError(f"{where}: unit {row['unit']!r} not one of {UNITS}")
        try:
            value = float(row["value"])
        except (TypeError, ValueError):
            raise DataError(f"{where}: value {row['value']!r} is not a number") from None
        if not math.isfinite(value):
            raise DataError(f"{where}: value {value} is not finite")
        for part in filter(None, (p.strip() for p in str(row["setting"]).split(";"))):
            if "=" not in part:
                raise DataError(f"{where}: setting part {part!r} is not key=value (parts separated by ';')")
    dup = df.duplicated(list(KEY), keep=False)
    if dup.any():
        first = df[dup].iloc[0]
        raise DataError(f"{origin}: duplicate published entry {dict(first[list(KEY)])}")


def load(metric: str | Sequence[str] | None = None, *, paper: str | None = None, table: str | None = None,
                   dataset: str | Sequence[str] | None = None, direction: str | None = None,
                   method: str | Sequence[str] | None = None, path: str | os.PathLike | None = None):
    """Published numbers as a validated DataFrame (columns COLUMNS), optionally filtered."""
    import pandas as pd

    folder = published_dir(path)
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if not files:
        raise DataError(f"no published-number CSVs in {folder}; set $BENCH_PUBLISHED_DIR or pass its folder")
    frames = []
    for f in files:
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
        validate(df, str(f))
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    validate(out, str(folder))  # duplicates across files
    out["value"] = out["value"].astype(float)
    out["table"] = out["table"].astype(str)
    filters = {"metric": metric, "paper": paper, "table": table, "dataset": dataset, "direction": direction,
               "method": method}
    for col, want in filters.items():
        if want is None:
            continue
        wanted = [want] if isinstance(want, str) else list(want)
        out = out[out[col].isin(wanted)]
    return out.reset_index(drop=True)


def parse_setting(text: str | Mapping[str, Any] | None) -> dict[str, str]:
    """'a=1; b=x' or {'method.a': 1} -> {'a': '1', 'b': 'x'} (the `method.` prefix dropped, values as text)."""
    if not text:
        return {}
    if isinstance(text, Mapping):
        items = text.items()
    else:
        items = (p.split("=", 1) for p in (s.strip() for s in str(text).split(";")) if p)
    out = {}
    for key, value in items:
        key = str(key).strip()
        key = key[len("method."):] if key.startswith("method.") else key
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        out[key] = str(value).strip()
    return out


def format_setting(setting: Mapping[str, Any]) -> str:
    """{'num_patches': 64} -> 'num_patches=64' (sorted, '; '-separated)."""
    return "; ".join(f"{k}={v}" for k, v in sorted(parse_setting(setting).items()))


#: How the papers spell methods that appear only in published tables (bench does not train them). Registered
#: methods carry their label on their registry line (methods/registry.py); `method_label` reads both.
PUBLISHED_ONLY_LABELS = {"drit": "DRIT", "distancegan": "DistanceGAN", "selfdistance": "SelfDistance",
                         "gcgan": "GcGAN", "crn": "CRN", "drpan": "DRPAN", "ground_truth": "Ground truth",
                         "real_pairs": "Real pairs", "unit": "UNIT", "ugatit_light": "U-GAT-IT-light",
                         "nicegan_star": "NICE-GAN*"}


def method_label(method: str) -> str:
    """The paper spelling of a method name ('qsattn_global' -> 'QS-Attn (Global)'); unknown names as given."""
    from methods.registry import METHODS

    if method in METHODS:
        return METHODS[method].label
    return PUBLISHED_ONLY_LABELS.get(method, method)


def method_order(method: str) -> tuple:
    """Sort key: registered methods in registry order (roughly the papers'), then published-only ones, then
    unknown names alphabetically."""
    from methods.registry import METHODS

    order = [*METHODS, *PUBLISHED_ONLY_LABELS]
    return (order.index(method) if method in order else len(order), method)


#: The paper whose number is shown first for a method (its own paper), before any other paper's copy.
HOME_PAPER = {"qsattn_global": "qsattn2022", "qsattn_local": "qsattn2022", "qsattn_local_global": "qsattn2022",
              "dclgan": "dclgan2021", "simdcl": "dclgan2021", "bicyclegan": "bicyclegan2017", "cut": "cut2020",
              "fastcut": "cut2020", "nicegan_light": "nicegan2020"}
#: Unit conversions into bench's unit: (published unit, bench unit) -> factor.
CONVERSIONS = {("fraction", "%"): 100.0}


def pick(candidates, method: str, paper: str | None):
    """The published row to show for one cell: --paper, else the method's own paper, else the first table."""
    if candidates.empty:
        return None, []
    if paper:
        candidates = candidates[candidates["paper"] == paper]
        if candidates.empty:
            return None, []
    home = HOME_PAPER.get(method)
    ranked = sorted(candidates.to_dict("records"),
                    key=lambda r: (r["paper"] != home, r["table"] not in ("1",), r["paper"], r["table"]))
    chosen = ranked[0]
    others = [r for r in ranked[1:] if r["value"] != chosen["value"]]
    return chosen, others


def in_bench_unit(row: Mapping[str, Any]) -> float | None:
    """A published value in bench's unit for that metric, or None when the units cannot be reconciled."""
    have = row["unit"]
    want = catalog.get(row["metric"]).unit
    if have in ("", want):  # an empty unit means "as bench reports it"
        return float(row["value"])
    factor = CONVERSIONS.get((have, want))
    return float(row["value"]) * factor if factor else None
