"""Find the image files of one split and domain in a dataset folder, checking the layout eagerly.

Folders must exist and hold images with a supported extension; anything else is a DataError naming the
folder and what is wrong. Images are listed non-recursively and sorted by name, as the official loaders do
(`sorted(make_dataset(dir))`), so index i means the same file everywhere. Decoding happens later, lazily.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from bench.data.registry import DatasetSpec
from bench.data.transforms import IMG_EXTENSIONS, ImageRef, is_image, pair_problem
from bench.errors import DataError, UsageError

log = logging.getLogger(__name__)

#: Share of a flat AFHQ-style class folder that goes to the test split.
FLAT_TEST_FRACTION = 0.2

_warned: set[tuple[str, str]] = set()


def form_for(spec: DatasetSpec, paired: bool) -> str:
    """The on-disk layout to read: the toy set has both forms; every other dataset has one."""
    if spec.layout == "generated":
        return "aligned" if paired else "unaligned"
    return spec.layout


def expected_layout(spec: DatasetSpec, form: str | None = None) -> str:
    """A one-line description of the folders a layout needs."""
    form = form or spec.layout
    tests = "/".join(spec.splits["test"])
    if form == "unaligned":
        return f"trainA/ trainB/ {tests}A/ {tests}B/ image folders"
    if form == "aligned":
        return f"train/ and {tests}/ folders of side-by-side A|B images"
    if form == "class_folders":
        doms = ",".join(spec.domains)
        return f"train/{{{doms}}}/ and {tests}/{{{doms}}}/, or flat {{{doms}}}/ folders"
    return f"{expected_layout(spec, 'unaligned')} plus {expected_layout(spec, 'aligned')}"


def _found(root: Path) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir() if not p.name.startswith("."))
    except OSError:
        return "an unreadable folder"
    if not names:
        return "an empty folder"
    more = f" ... ({len(names)} entries)" if len(names) > 8 else ""
    return " ".join(names[:8]) + more


def list_images(folder: Path) -> list[str]:
    """Sorted image paths in `folder`; DataError if it is missing, unreadable, empty or holds no supported images."""
    if not folder.is_dir():
        raise DataError(f"missing folder {folder}")
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as exc:
        raise DataError(f"cannot list folder {folder} ({exc.strerror or exc}); check its permissions "
                        "(it must be readable and searchable by this user)") from None
    images = [str(p) for p in files if is_image(p)]
    if not files:
        raise DataError(f"folder {folder} is empty; it should hold the split's images")
    if not images:
        raise DataError(f"folder {folder} holds no images with a supported extension "
                        f"({', '.join(IMG_EXTENSIONS)}); e.g. {files[0].name}")
    if len(images) < len(files):
        log.debug("%s: ignoring %d non-image files", folder, len(files) - len(images))
    return images


def _split_dir(spec: DatasetSpec, root: Path, split: str, form: str, suffix: str = "") -> Path:
    """The first existing candidate folder of `split` (e.g. test -> val/ or test/), else a layout error."""
    candidates = spec.check_split(split)
    for name in candidates:
        if (root / f"{name}{suffix}").is_dir():
            return root / f"{name}{suffix}"
    wanted = " or ".join(f"{n}{suffix}/" for n in candidates)
    raise DataError(f"{root}: no {wanted} folder for split {split!r} of {spec.name}; expected "
                    f"{expected_layout(spec, form)}, found {_found(root)}")


def is_flat(spec: DatasetSpec, root: Path) -> bool:
    """True for class folders stored without split folders (e.g. <root>/{cat,dog,wild}/)."""
    if spec.layout != "class_folders":
        return False
    has_split = any((root / n).is_dir() for names in spec.splits.values() for n in names)
    return not has_split and any((root / d).is_dir() for d in spec.domains)


def flat_split(paths: list[str], split: str) -> list[str]:
    """Deterministic 80/20 split of a flat class folder: the 20% with the smallest sha256(file name) are test.

    The rank-based rule guarantees at least one test image when the folder holds two or more; a folder of
    one image serves both splits. The choice depends only on the file names present.
    """
    if len(paths) < 2:
        return list(paths)
    ranked = sorted(paths, key=lambda p: hashlib.sha256(Path(p).name.encode()).hexdigest())
    n_test = max(1, round(FLAT_TEST_FRACTION * len(paths)))
    chosen = set(ranked[:n_test]) if split != "train" else set(ranked[n_test:])
    return [p for p in paths if p in chosen]


def domain_refs(spec: DatasetSpec, root: Path, split: str, domain: str, form: str | None = None) -> list[ImageRef]:
    """The images of `domain` in `split`, read from `root` in layout `form` (default: the spec's)."""
    form = form or form_for(spec, paired=False)
    if domain not in spec.domains:
        raise UsageError(f"dataset {spec.name!r} has no domain {domain!r}; valid: {', '.join(spec.domains)}")
    if form == "aligned":
        folder = _split_dir(spec, root, split, form)
        return [ImageRef(p, spec.domains.index(domain)) for p in list_images(folder)]
    if form == "unaligned":
        suffix = "AB"[spec.domains.index(domain)]
        return [ImageRef(p) for p in list_images(_split_dir(spec, root, split, form, suffix))]
    if form == "class_folders":
        if is_flat(spec, root):
            key = (str(root), domain)
            if key not in _warned:
                _warned.add(key)
                log.warning("%s has no train/val folders: splitting %s/ deterministically, %d%% test by hashed "
                            "file name (bench.data.layout.flat_split)", root, domain, FLAT_TEST_FRACTION * 100)
            spec.check_split(split)
            return [ImageRef(p) for p in flat_split(list_images(root / domain), split)]
        return [ImageRef(p) for p in list_images(_split_dir(spec, root, split, form) / domain)]
    raise ValueError(f"unknown layout {form!r}")


def check_pairs(spec: DatasetSpec, refs: list[ImageRef]) -> None:
    """Every aligned file of `refs` is a side-by-side pair of the spec's layout (width = pair_aspect x height),
    read from the file headers; DataError naming the first file that is not."""
    for path in dict.fromkeys(r.path for r in refs if r.half is not None):
        problem = header_problem(path, spec.pair_aspect)
        if problem:
            raise DataError(f"{problem}; {spec.name} is a paired dataset, so every file of the split must be one")


def header_problem(path: str, pair_aspect: float | None = None) -> str | None:
    """Why the header of image `path` is unusable (or, with `pair_aspect`, not an A|B pair); None when fine."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            mode = im.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"cannot decode image {path} ({exc}); replace or delete the file"
    if mode == "F":
        return (f"image {path} holds floating-point pixels (PIL mode F): bench cannot tell their scale; convert it "
                "to an 8-bit RGB image")
    if pair_aspect is not None:
        problem = pair_problem(w, h, pair_aspect)
        if problem:
            return f"aligned image {path} is {w}x{h}: {problem}"
    return None
