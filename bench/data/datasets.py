"""Torch datasets for training (`TranslationDataset`) and evaluation (`ImageDataset`).

Unpaired: A in order (`i % |A|`), B at random (train) or `i % |B|` (test), `len = max(|A|, |B|)`, crop and
flip drawn independently for A and B. Paired: one crop/flip for both halves of an aligned file.
Follows taesungp/contrastive-unpaired-translation@b3ac297:data/unaligned_dataset.py and
junyanz/pytorch-CycleGAN-and-pix2pix@00d5574:data/aligned_dataset.py, except that every random choice comes
from a private generator seeded by (seed, epoch, index) instead of the global `random` module, so a resumed
run sees exactly the data an uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.data.layout import check_pairs, domain_refs, form_for
from bench.data.registry import DATASETS, DatasetSpec, get_spec
from bench.data.roots import resolve_root
from bench.data.transforms import ImageRef, draw_params, load_image, test_transform, train_transform
from bench.errors import UsageError

#: Separates the data stream from other streams seeded with [seed, epoch, ...] (e.g. the epoch order).
_STREAM = 0xDA7A


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value!r}")


class TranslationDataset(Dataset):
    """Items ``{"A", "B", "A_path", "B_path"}``; A is the source of the direction, B the target."""

    def __init__(self, spec: DatasetSpec, root: Path, split: str, *, source: str, target: str, paired: bool,
                 load_size: int, crop_size: int, flip: bool, seed: int, augment: bool) -> None:
        self.spec, self.root, self.split = spec, Path(root), split
        self.source, self.target = source, target
        self.direction = f"{source}2{target}"
        self.paired = paired
        self.load_size, self.crop_size, self.flip = load_size, crop_size, flip
        self.seed, self.augment = seed, augment
        self.epoch, self.jitter = 1, True
        form = form_for(spec, paired)
        self.A = domain_refs(spec, self.root, split, source, form)
        self.B = domain_refs(spec, self.root, split, target, form)
        if paired and len(self.A) != len(self.B):  # cannot happen for aligned files; guards future layouts
            raise UsageError(f"{spec.name} {split}: {len(self.A)} vs {len(self.B)} images cannot be paired")
        check_pairs(spec, self.A)  # aligned files only: each must be an A|B pair, before any training

    @property
    def len_A(self) -> int:
        return len(self.A)

    @property
    def len_B(self) -> int:
        return len(self.B)

    def set_epoch(self, epoch: int, jitter: bool = True) -> None:
        """Select the epoch's random stream; `jitter=False` resizes straight to crop size (CUT's finetune)."""
        self.epoch, self.jitter = int(epoch), bool(jitter)

    def __len__(self) -> int:
        return len(self.A) if self.paired else max(len(self.A), len(self.B))

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index, _STREAM])

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        index %= n
        a_ref = self.A[index % len(self.A)]
        if not self.augment:
            b_ref = self.B[index % len(self.B)]
            size = self.crop_size
            return self._item(a_ref, b_ref, test_transform(load_image(a_ref), size),
                              test_transform(load_image(b_ref), size))
        rng = self._rng(index)
        load = self.load_size if self.jitter else self.crop_size
        if self.paired:
            b_ref = self.B[index]
            params = draw_params(rng, load, self.crop_size)
            params_b = params  # the same crop and flip for both halves of a pair
        else:
            b_ref = self.B[int(rng.integers(len(self.B)))]
            params = draw_params(rng, load, self.crop_size)
            params_b = draw_params(rng, load, self.crop_size)
        a = train_transform(load_image(a_ref), load, self.crop_size, params, self.flip)
        b = train_transform(load_image(b_ref), load, self.crop_size, params_b, self.flip)
        return self._item(a_ref, b_ref, a, b)

    @staticmethod
    def _item(a_ref: ImageRef, b_ref: ImageRef, a: torch.Tensor, b: torch.Tensor) -> dict:
        return {"A": a, "B": b, "A_path": a_ref.path, "B_path": b_ref.path}

    def __repr__(self) -> str:
        kind = "paired" if self.paired else "unpaired"
        return (f"TranslationDataset({self.spec.name} {self.split} {self.direction} {kind}, "
                f"|A|={self.len_A} |B|={self.len_B}, root={self.root})")


class ImageDataset(Dataset):
    """The images of one domain of one split, resized for evaluation: items ``{"image", "path"}``."""

    def __init__(self, spec: DatasetSpec, root: Path, split: str, domain: str, size: int) -> None:
        self.spec, self.root, self.split, self.domain, self.size = spec, Path(root), split, domain, size
        # The toy set's test folders hold the same scenes in both forms; evaluation reads the unaligned one.
        self.refs = domain_refs(spec, self.root, split, domain, form_for(spec, paired=False))
        check_pairs(spec, self.refs)

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.refs]

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> dict:
        ref = self.refs[index]
        return {"image": test_transform(load_image(ref), self.size), "path": ref.path}

    def __repr__(self) -> str:
        return f"ImageDataset({self.spec.name} {self.split} {self.domain}, n={len(self)}, root={self.root})"


def load_pairs(name: str, split: str, *, root: str | Path | None = None, direction: str | None = None,
               paired: bool = False, load_size: int = 286, crop_size: int = 256, flip: bool = True,
               seed: int = 0, domains: tuple[str, str] | None = None, augment: bool | None = None
               ) -> TranslationDataset:
    """A training/test dataset of (source, target) images of dataset `name`.

    Args:
        direction: "<src>2<dst>" (e.g. "label2photo", "dog2cat"), "AtoB"/"BtoA" of the file layout, or None
            for the dataset's default. `domains=(src, dst)` is the same as direction "src2dst".
        paired: read exact pairs (aligned datasets only); otherwise B is drawn independently of A.
        augment: random resize-crop-flip; default True for the train split and False otherwise.
    """
    spec = get_spec(name)
    source, target = spec.resolve_direction(direction, domains)
    _check_sizes(load_size=load_size, crop_size=crop_size)
    if load_size < crop_size:
        raise UsageError(f"load_size ({load_size}) must be >= crop_size ({crop_size})")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
    if paired and not spec.aligned:
        pairable = ", ".join(n for n, s in DATASETS.items() if s.aligned)
        raise UsageError(f"dataset {name!r} has no aligned pairs, so paired methods cannot train on it; "
                         f"use one of: {pairable}")
    spec.check_split(split)
    path = resolve_root(name, root)
    return TranslationDataset(spec, path, split, source=source, target=target, paired=paired,
                              load_size=load_size, crop_size=crop_size, flip=flip, seed=seed,
                              augment=split == "train" if augment is None else augment)


def load_domain(name: str, split: str, domain: str, *, root: str | Path | None = None,
                direction: str | None = None, size: int = 256) -> ImageDataset:
    """The images of one domain for evaluation: `domain` is "A"/"B" (source/target of `direction`) or a name."""
    spec = get_spec(name)
    _check_sizes(size=size)
    if domain in ("A", "B"):
        source, target = spec.resolve_direction(direction)
        domain = source if domain == "A" else target
    elif domain not in spec.domains:
        raise UsageError(f"dataset {name!r} has no domain {domain!r}; valid: A, B, {', '.join(spec.domains)}")
    spec.check_split(split)
    return ImageDataset(spec, resolve_root(name, root), split, domain, size)
