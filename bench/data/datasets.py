"""Torch datasets for training (`TranslationDataset`) and evaluation (`ImageDataset`).

Unpaired sampling follows the method's official loader (`Pipeline.sampling`):
- ``random_b`` (CycleGAN, CUT family): A in order (`i % |A|`), B drawn uniformly *with replacement* (train) or
  `i % |B|` (test), `len = max(|A|, |B|)`; the training loop shuffles the indices.
  Follows taesungp/contrastive-unpaired-translation@b3ac297:data/unaligned_dataset.py.
- ``cycle`` (NICE-GAN): each domain is its own stream of shuffled passes, drawn *without replacement* and
  independently of the other (two DataLoaders with shuffle=True, re-created when exhausted); the item at global
  position k takes pass k // |A| of A at k % |A| (same for B). `len = max(|A|, |B|)` is bench's epoch.
  Follows alpc91/NICE-GAN-pytorch@1b114f1:NICE.py train (trainA_iter / trainB_iter).
- ``zip`` (MUNIT): per epoch one fresh permutation of each domain, zipped, so an epoch is `min(|A|, |B|)`
  items drawn without replacement and the larger domain's rest is unused that epoch.
  Follows NVlabs/MUNIT@a82e222:train.py (zip(train_loader_a, train_loader_b), shuffle, drop_last).
The stream modes order the data themselves (`shuffled = False`: the loop must not shuffle them again).
Paired: one crop/flip for both halves of an aligned file (pytorch-CycleGAN-and-pix2pix@00d5574:
data/aligned_dataset.py). Every random choice comes from a private generator seeded by (seed, epoch, index)
or (seed, domain, pass) instead of the global RNGs, so a resumed run sees exactly the data an uninterrupted
one would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.data.layout import check_pairs, domain_refs, form_for
from bench.data.registry import DATASETS, DatasetSpec, get_spec
from bench.data.roots import resolve_root
from bench.data.transforms import (DEFAULT_PIPELINE, ImageRef, Pipeline, color_jitter, draw_jitter, draw_params,
                                   load_image, resized_size, test_transform, to_tensor, train_crop)
from bench.errors import UsageError

#: Separates the data stream from other streams seeded with [seed, epoch, ...] (e.g. the epoch order).
_STREAM = 0xDA7A
#: Seeds the per-domain permutations of the stream sampling modes.
_PASS = 0xC7C1E


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value!r}")


class TranslationDataset(Dataset):
    """Items ``{"A", "B", "A_path", "B_path"}`` (+ ``"A_aug", "B_aug"`` with colour jitter); A is the source of the
    direction, B the target."""

    def __init__(self, spec: DatasetSpec, root: Path, split: str, *, source: str, target: str, paired: bool,
                 load_size: int, crop_size: int, flip: bool, seed: int, augment: bool,
                 pipeline: Pipeline = DEFAULT_PIPELINE, max_items: int = 0) -> None:
        self.spec, self.root, self.split = spec, Path(root), split
        self.source, self.target = source, target
        self.direction = f"{source}2{target}"
        self.paired = paired
        self.load_size, self.crop_size, self.flip = load_size, crop_size, flip
        self.seed, self.augment = seed, augment
        self.pipeline = pipeline
        self.epoch, self.jitter = 1, True
        form = form_for(spec, paired)
        self.A = domain_refs(spec, self.root, split, source, form)
        self.B = domain_refs(spec, self.root, split, target, form)
        if paired and len(self.A) != len(self.B):  # cannot happen for aligned files; guards future layouts
            raise UsageError(f"{spec.name} {split}: {len(self.A)} vs {len(self.B)} images cannot be paired")
        check_pairs(spec, self.A)  # aligned files only: each must be an A|B pair, before any training
        self.full_len = self._natural_len()
        if max_items and self.streams:
            # data.max_train for the stream modes: each domain is limited to its first N images.
            self.A, self.B = self.A[:max_items], self.B[:max_items]
        self._len = self._natural_len()
        if max_items and not self.streams:
            self._len = min(self._len, max_items)

    @property
    def len_A(self) -> int:
        return len(self.A)

    @property
    def len_B(self) -> int:
        return len(self.B)

    @property
    def streams(self) -> bool:
        """Unpaired training with a stream sampling mode (cycle / zip): the dataset orders its own data."""
        return self.augment and not self.paired and self.pipeline.sampling != "random_b"

    @property
    def shuffled(self) -> bool:
        """Whether the training loop shuffles the indices (False: the stream modes draw their own order)."""
        return not self.streams

    def _natural_len(self) -> int:
        if self.paired:
            return len(self.A)
        if self.streams and self.pipeline.sampling == "zip":
            return min(len(self.A), len(self.B))
        return max(len(self.A), len(self.B))

    def set_epoch(self, epoch: int, jitter: bool = True) -> None:
        """Select the epoch's random stream; `jitter=False` resizes straight to crop size (CUT's finetune)."""
        self.epoch, self.jitter = int(epoch), bool(jitter)

    def __len__(self) -> int:
        return self._len

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index, _STREAM])

    def _pass_order(self, domain: int, n: int, pass_index: int) -> np.ndarray:
        """The shuffled order of one pass over a domain (0 = A, 1 = B): a function of (seed, domain, pass)."""
        return np.random.default_rng([self.seed, domain, pass_index, _PASS]).permutation(n)

    def _stream_refs(self, index: int) -> tuple[ImageRef, ImageRef]:
        """(A, B) of a stream mode at `index` of the current epoch (see the module docstring)."""
        if self.pipeline.sampling == "zip":
            a = self._pass_order(0, len(self.A), self.epoch)[index]
            b = self._pass_order(1, len(self.B), self.epoch)[index]
            return self.A[int(a)], self.B[int(b)]
        k = (self.epoch - 1) * len(self) + index
        a = self._pass_order(0, len(self.A), k // len(self.A))[k % len(self.A)]
        b = self._pass_order(1, len(self.B), k // len(self.B))[k % len(self.B)]
        return self.A[int(a)], self.B[int(b)]

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        index %= n
        pipe = self.pipeline
        if not self.augment:
            a_ref = self.A[index % len(self.A)]
            b_ref = self.B[index % len(self.B)]
            size = self.crop_size if pipe.aspect == "square" else self.load_size
            return self._item(a_ref, b_ref, test_transform(load_image(a_ref), size, pipe),
                              test_transform(load_image(b_ref), size, pipe))
        rng = self._rng(index)
        load = self.load_size if self.jitter else self.crop_size
        if self.paired:
            a_ref, b_ref = self.A[index], self.B[index]
        elif self.streams:
            a_ref, b_ref = self._stream_refs(index)
        else:
            a_ref = self.A[index % len(self.A)]
            b_ref = self.B[int(rng.integers(len(self.B)))]
        a_img, b_img = load_image(a_ref), load_image(b_ref)
        params = draw_params(rng, resized_size(a_img.size, load, pipe.aspect), self.crop_size)
        # the same crop and flip for both halves of a pair
        params_b = params if self.paired else draw_params(rng, resized_size(b_img.size, load, pipe.aspect),
                                                          self.crop_size)
        a = train_crop(a_img, load, self.crop_size, params, self.flip, pipe)
        b = train_crop(b_img, load, self.crop_size, params_b, self.flip, pipe)
        item = self._item(a_ref, b_ref, to_tensor(a), to_tensor(b))
        if pipe.color_jitter:
            item["A_aug"] = to_tensor(color_jitter(a, draw_jitter(rng)))
            item["B_aug"] = to_tensor(color_jitter(b, draw_jitter(rng)))
        return item

    @staticmethod
    def _item(a_ref: ImageRef, b_ref: ImageRef, a: torch.Tensor, b: torch.Tensor) -> dict:
        return {"A": a, "B": b, "A_path": a_ref.path, "B_path": b_ref.path}

    def __repr__(self) -> str:
        kind = "paired" if self.paired else f"unpaired, {self.pipeline.sampling}"
        return (f"TranslationDataset({self.spec.name} {self.split} {self.direction} {kind}, "
                f"|A|={self.len_A} |B|={self.len_B}, root={self.root})")


class ImageDataset(Dataset):
    """The images of one domain of one split, resized for evaluation: items ``{"image", "path"}``.

    `size`, `crop` and `pipeline` are the method's official test preprocessing (`test_transform`).
    """

    def __init__(self, spec: DatasetSpec, root: Path, split: str, domain: str, size: int, crop: int = 0,
                 pipeline: Pipeline = DEFAULT_PIPELINE) -> None:
        self.spec, self.root, self.split, self.domain, self.size = spec, Path(root), split, domain, size
        self.crop, self.pipeline = crop, pipeline
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
        return {"image": test_transform(load_image(ref), self.size, self.pipeline, self.crop), "path": ref.path}

    def __repr__(self) -> str:
        return f"ImageDataset({self.spec.name} {self.split} {self.domain}, n={len(self)}, root={self.root})"


def load_pairs(name: str, split: str, *, root: str | Path | None = None, direction: str | None = None,
               paired: bool = False, load_size: int = 286, crop_size: int = 256, flip: bool = True,
               seed: int = 0, domains: tuple[str, str] | None = None, augment: bool | None = None,
               pipeline: Pipeline = DEFAULT_PIPELINE, max_items: int = 0) -> TranslationDataset:
    """A training/test dataset of (source, target) images of dataset `name`.

    Args:
        direction: "<src>2<dst>" (e.g. "label2photo", "dog2cat"), "AtoB"/"BtoA" of the file layout, or None
            for the dataset's default. `domains=(src, dst)` is the same as direction "src2dst".
        paired: read exact pairs (aligned datasets only); otherwise B is drawn independently of A.
        augment: random resize-crop-flip; default True for the train split and False otherwise.
        pipeline: the official loader's rule (filter, aspect, flip order, sampling, colour jitter).
        max_items: use only the first N items (stream modes: the first N images of each domain); 0 = all.
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
                              augment=split == "train" if augment is None else augment, pipeline=pipeline,
                              max_items=max_items)


def load_domain(name: str, split: str, domain: str, *, root: str | Path | None = None,
                direction: str | None = None, size: int = 256, crop: int = 0,
                pipeline: Pipeline = DEFAULT_PIPELINE) -> ImageDataset:
    """The images of one domain for evaluation: `domain` is "A"/"B" (source/target of `direction`) or a name.

    `size`/`crop`/`pipeline`: the test preprocessing (resize to size, centre crop when 0 < crop < size).
    """
    spec = get_spec(name)
    _check_sizes(size=size)
    if crop < 0 or crop > size:
        raise UsageError(f"crop ({crop}) must be in [0, size={size}]")
    if domain in ("A", "B"):
        source, target = spec.resolve_direction(direction)
        domain = source if domain == "A" else target
    elif domain not in spec.domains:
        raise UsageError(f"dataset {name!r} has no domain {domain!r}; valid: A, B, {', '.join(spec.domains)}")
    spec.check_split(split)
    return ImageDataset(spec, resolve_root(name, root), split, domain, size, crop, pipeline)
