"""`bench data check`: layout, per-split counts against the official release, and decodability.

Counts are checked here and by `bench data get`, never on every load, so a local subset (the test
fixtures) loads fine and is reported as "partial: 64 of 2975".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from bench.data.layout import domain_refs, expected_layout, header_problem, is_flat
from bench.data.registry import DatasetSpec, get_spec
from bench.data.roots import existing_root
from bench.data.transforms import ImageRef, load_image
from bench.errors import DataError


@dataclass
class CountRow:
    """One (split, domain) line of a check."""

    split: str
    domain: str
    folder: str
    found: int
    expected: int | None

    @property
    def status(self) -> str:
        if self.found < 0:
            return "missing"
        if self.expected is None:
            return "ok"
        if self.found == self.expected:
            return "ok"
        if self.found < self.expected:
            return f"partial: {self.found} of {self.expected}"
        return f"more than official: {self.found} vs {self.expected}"


@dataclass
class CheckReport:
    """The result of checking one dataset folder."""

    name: str
    root: Path
    layout: str
    rows: list[CountRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sizes: Counter = field(default_factory=Counter)
    decoded: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def complete(self) -> bool:
        """Every split present with exactly the official counts."""
        return self.ok and all(r.status == "ok" for r in self.rows)


def _forms(spec: DatasetSpec) -> list[str]:
    return ["unaligned", "aligned"] if spec.layout == "generated" else [spec.layout]


def count_images(spec: DatasetSpec, root: Path) -> tuple[list[CountRow], list[str], list[str], list[ImageRef]]:
    """Per split and domain image counts; (rows, problems, notes, every image ref seen)."""
    rows, problems, notes, refs = [], [], [], []
    seen: dict[tuple, str] = {}
    flat = is_flat(spec, root)
    for form in _forms(spec):
        tag = " (aligned)" if spec.layout == "generated" and form == "aligned" else ""
        for split in spec.splits:
            expected = spec.counts.get(split, {})
            for domain in spec.domains:
                try:
                    found = domain_refs(spec, root, split, domain, form)
                except DataError as exc:
                    if split in spec.required_splits:
                        problems.append(str(exc))
                    else:
                        notes.append(f"optional split {split!r} is not present")
                    rows.append(CountRow(split, domain, "-", -1, expected.get(domain)))
                    continue
                folder = Path(found[0].path).parent.relative_to(root).as_posix() + "/" + tag
                if flat:
                    folder += f" ({split} part)"
                key = (form, domain, tuple(r.path for r in found))
                if key in seen:  # e.g. cityscapes' test and val both read val/
                    notes.append(f"split {split!r} reads the same images as split {seen[key]!r}")
                    continue
                seen[key] = split
                rows.append(CountRow(split, domain, folder, len(found), expected.get(domain)))
                if form != "aligned" or domain == spec.domains[0]:  # one aligned file holds both domains
                    refs.extend(found)
    if flat:
        notes.append("flat class folders without train/val: the split is derived from hashed file names "
                     "(80/20); counts are compared with the official split sizes")
    return rows, list(dict.fromkeys(problems)), list(dict.fromkeys(notes)), refs


def check_dataset(name: str, root: str | Path | None = None, *, decode: bool = True,
                  on_progress: Callable[[int, int], None] | None = None) -> CheckReport:
    """Check layout and counts of dataset `name`; with `decode`, fully decode every image. Never writes.

    Problems (missing required split, empty or unreadable folder, undecodable image, an aligned file that is not
    an A|B pair of the spec's layout) make `report.ok` False; partial counts are reported but are not problems.
    """
    spec = get_spec(name)
    path = existing_root(name, root)  # a check reads: it never downloads or generates
    report = CheckReport(name=name, root=path, layout=expected_layout(spec))
    report.rows, report.problems, report.notes, refs = count_images(spec, path)
    unique = list(dict.fromkeys(r.path for r in refs))
    half = {r.path: r.half for r in refs}
    for i, p in enumerate(unique):
        ref = ImageRef(p, half[p])
        problem = header_problem(p, spec.pair_aspect if ref.half is not None else None)
        if problem:
            report.problems.append(problem)
        else:
            try:
                if decode:
                    img = load_image(ref)
                    report.sizes[(img.width * (2 if ref.half is not None else 1), img.height)] += 1
                else:
                    with Image.open(p) as im:  # header only
                        report.sizes[im.size] += 1
                report.decoded += 1
            except DataError as exc:
                report.problems.append(str(exc))
            except (OSError, Image.DecompressionBombError) as exc:
                report.problems.append(f"cannot read image {p}: {exc}")
        if on_progress:
            on_progress(i + 1, len(unique))
    if spec.image_size and report.sizes and set(report.sizes) != {spec.image_size}:
        sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in report.sizes.most_common(4))
        w, h = spec.image_size
        report.notes.append(f"image sizes {sizes} differ from the official {w}x{h} (loaders resize anyway)")
    return report
