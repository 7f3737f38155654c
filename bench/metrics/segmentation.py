"""Cityscapes labels->photo "FCN-score" with DRN-D (the CUT-lineage protocol): mIoU, pixel and class accuracy.

A Cityscapes-trained DRN segments each generated photo; its prediction is compared with the ground-truth
label map the photo was generated from. Protocol (recorded in every fingerprint):
- photos resized to `resolution` (default 256x128 WxH, CUT's evaluation size) with PIL bicubic, scaled to
  [0,1] and normalised with fyu/drn's Cityscapes mean/std; argmax of the 19 class scores;
- colour label maps resized to the same size with PIL nearest (no blended colours) and mapped to the 19
  train ids by the nearest colour (L1) of fyu/drn's CITYSCAPE_PALETTE; the palette's 20th entry, black,
  and so every void colour nearest to it, is ignored (Hneg_SRC get_mAP.py color2ids; it resizes labels
  with the PIL default filter instead, which blends colours at edges);
- one confusion matrix over all images (rows = truth): pixel accuracy = sum(diag)/sum, class accuracy =
  nanmean(diag/row sums), mIoU = nanmean(diag/(row + column - diag)), all in percent. CUT's "mAP" is this
  mIoU (fyu/drn segment.py prints nanmean(per_class_iu) as mAP).
Weights come from the user (`--seg-weights`, e.g. the public `drn_d_22_cityscapes.pth`); without them the
scores are unavailable, never a made-up number. Numbers are comparable only for one checkpoint (sha256 in the
fingerprint) and one resolution: CUT's own DRN-D-22 (trained at 256x128) is unreleased.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image

from bench.errors import CheckpointError, UsageError
from bench.metrics.drn import ARCHS, DRNSeg, bilinear_up_weights
from bench.metrics.images import ImageInput, LoadOptions, load_images, match_pairs
from bench.metrics.protocol import fingerprint, weights_sha256
from bench.metrics.result import MetricResult
from bench.weights import WeightsSpec, find, load_state_dict

log = logging.getLogger(__name__)

SEG_WEIGHTS_ENV = "BENCH_SEG_WEIGHTS"
NAMES = ("miou", "pixel_acc", "class_acc")
NUM_CLASSES = 19
IGNORE = 255
#: fyu/drn@d75db2e datasets/cityscapes/info.json
DRN_MEAN = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)
DRN_STD = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)
#: The 19 Cityscapes train-id colours, then black for void (fyu/drn segment.py CITYSCAPE_PALETTE).
PALETTE = np.array([
    [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153],
    [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60],
    [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32],
    [0, 0, 0]], dtype=np.int32)
CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light", "traffic_sign", "vegetation",
           "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")


def colors_to_train_ids(label: np.ndarray) -> np.ndarray:
    """(H,W,3) colour label map -> (H,W) train ids 0..18, 255 where the nearest palette colour is void black."""
    dist = np.abs(label[:, :, None, :].astype(np.int32) - PALETTE[None, None]).sum(axis=-1)
    ids = dist.argmin(axis=-1).astype(np.uint8)
    ids[ids == NUM_CLASSES] = IGNORE
    return ids


def confusion(pred: np.ndarray, truth: np.ndarray, n: int = NUM_CLASSES) -> np.ndarray:
    """n x n confusion counts (rows = truth, columns = prediction); truth outside 0..n-1 is ignored."""
    keep = (truth >= 0) & (truth < n)
    return np.bincount(n * truth[keep].astype(np.int64) + pred[keep].astype(np.int64), minlength=n * n).reshape(n, n)


def scores_from_confusion(hist: np.ndarray) -> dict[str, Any]:
    """Pixel accuracy, class accuracy, mIoU (percent) and per-class IoU from a confusion matrix."""
    hist = hist.astype(np.float64)
    diag = np.diag(hist)
    with np.errstate(divide="ignore", invalid="ignore"):
        class_acc = diag / hist.sum(axis=1)
        iou = diag / (hist.sum(axis=1) + hist.sum(axis=0) - diag)
    total = hist.sum()
    return {"pixel_acc": 100 * diag.sum() / total if total else float("nan"),
            "class_acc": 100 * float(np.nanmean(class_acc)) if np.isfinite(class_acc).any() else float("nan"),
            "miou": 100 * float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
            "iou": 100 * iou}


#: The Cityscapes DRN checkpoint: only ever named by the user (no known hash, no download, not in the hub cache).
DRN_WEIGHTS = WeightsSpec("a Cityscapes DRN checkpoint", flag="--seg-weights", env=SEG_WEIGHTS_ENV,
                          hint="a Cityscapes DRN checkpoint, e.g. drn_d_22_cityscapes.pth")


def resolve_seg_weights(weights: str | Path | None) -> Path | None:
    """The DRN weights file: the argument, else $BENCH_SEG_WEIGHTS; None when neither is given."""
    found = find(DRN_WEIGHTS, weights)
    return None if found is None else found.path


@lru_cache(maxsize=1)
def load_drn(path: Path, sha256: str, arch: str, device: str) -> DRNSeg:
    """A DRNSeg with the checkpoint's weights (keys checked; `up` filled bilinearly if absent)."""
    state = load_state_dict(path)
    model = DRNSeg(arch, NUM_CLASSES)
    expected = model.state_dict()
    if "up.weight" not in state:  # it is fixed, some exports drop it
        bilinear_up_weights(model.up)
        state = {**state, "up.weight": model.up.weight.detach().clone()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path} is not a {arch} Cityscapes DRNSeg checkpoint: missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]} (use --seg-arch for other DRN-D depths)")
    bad = [k for k in expected if expected[k].shape != state[k].shape]
    if bad:
        raise CheckpointError(f"{path}: {bad[0]} has shape {tuple(state[bad[0]].shape)}, {arch} with {NUM_CLASSES} "
                              f"classes expects {tuple(expected[bad[0]].shape)}")
    model.load_state_dict(state)
    return model.to(device).eval()


def _resize(img: torch.Tensor, size: tuple[int, int], resample: int) -> np.ndarray:
    pil = Image.fromarray(img.permute(1, 2, 0).numpy())
    return np.asarray(pil.resize(size, resample=resample))


def segmentation_scores(fake: ImageInput, labels: ImageInput, weights: str | Path | None = None, *,
                        arch: str = "drn_d_22", resolution: tuple[int, int] = (256, 128), device: str = "cpu",
                        batch_size: int = 16, num_workers: int = 0, convert_rgb: bool = False,
                        context: Mapping[str, Any] | None = None) -> dict[str, MetricResult]:
    """mIoU / pixel accuracy / class accuracy of a Cityscapes DRN on generated photos vs their label maps.

    Args:
        fake: generated photos; labels: the colour label maps they were made from (matched by file stem).
        weights: DRN checkpoint (else $BENCH_SEG_WEIGHTS); absent -> every score is unavailable.
        resolution: (width, height) the photos and labels are resized to; multiples of 8.
    """
    if arch not in ARCHS:
        raise UsageError(f"unknown DRN arch {arch!r}; use one of {', '.join(ARCHS)} (--seg-arch)")
    w, h = resolution
    if w % 8 or h % 8 or w < 8 or h < 8:
        raise UsageError(f"segmentation resolution {w}x{h}: width and height must be positive multiples of 8")
    fp_fields: dict[str, Any] = {"network": f"{arch} DRNSeg, 19 Cityscapes train ids", "resolution": f"{w}x{h} (WxH)",
                                 "photo_resize": "PIL bicubic", "label_resize": "PIL nearest",
                                 "label_mapping": "nearest CITYSCAPE_PALETTE colour (L1), black = ignore",
                                 "normalisation": "fyu/drn cityscapes info.json mean/std", "units": "percent"}
    path = resolve_seg_weights(weights)
    if path is None:
        reason = (f"no DRN weights: pass --seg-weights FILE (e.g. drn_d_22_cityscapes.pth from fyu/drn) or set "
                  f"${SEG_WEIGHTS_ENV}")
        return {n: MetricResult.missing(n, reason,
                                        fingerprint=fingerprint(n, context=context, **fp_fields)) for n in NAMES}
    sha = weights_sha256(path)
    model = load_drn(path, sha, arch, str(device))
    opts = LoadOptions(allow_mixed_sizes=True, convert_rgb=convert_rgb, min_images=1)
    label_set, fake_set = match_pairs(load_images(labels, "label", opts), load_images(fake, "fake", opts))
    mean = torch.tensor(DRN_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(DRN_STD).view(1, 3, 1, 1)
    hist = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    with torch.inference_mode():
        for fb, lb in zip(fake_set.batches(batch_size, num_workers), label_set.batches(batch_size, num_workers)):
            photos = np.stack([_resize(f, (w, h), Image.BICUBIC) for f in fb])
            x = torch.from_numpy(photos).permute(0, 3, 1, 2).float().div(255)
            pred = model(((x - mean) / std).to(device)).argmax(dim=1).cpu().numpy()
            for p, lab in zip(pred, lb):
                hist += confusion(p, colors_to_train_ids(_resize(lab, (w, h), Image.NEAREST)))
    s = scores_from_confusion(hist)
    per_class = {f"iou_{c}": float(v) for c, v in zip(CLASSES, s["iou"]) if np.isfinite(v)}
    out = {}
    for n in NAMES:
        fp = fingerprint(n, n_real=len(label_set), n_fake=len(fake_set), context=context, weights_sha256=sha,
                         weights_file=path.name, **fp_fields)
        if not np.isfinite(s[n]):
            out[n] = MetricResult.missing(n, "no labelled pixels (every label pixel is void)", fingerprint=fp)
        else:
            out[n] = MetricResult(n, float(s[n]), None, per_class if n == "miou" else {}, fingerprint=fp)
    return out
