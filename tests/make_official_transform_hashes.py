"""One-off: record what the official loaders make of the real fixture images (tests/data/official_transforms.json).

Run once (`BENCH_FIXTURES=/path/to/shared python tests/make_official_transform_hashes.py`); the test
`tests/test_data_official_transforms.py` then checks bench's loader against the recorded hashes bit for bit.

This file does NOT use bench: each official rule is rebuilt from the plain PIL / torchvision calls the official
loader makes (same classes, same order), with the random crop offset, flip and jitter factors fixed so the result
is reproducible:
- CycleGAN/CUT family/BicycleGAN (`data/base_dataset.py get_transform`, preprocess resize_and_crop):
  Resize([load, load], BICUBIC) -> crop at (x, y) -> flip -> ToTensor -> Normalize(0.5); test Resize([s, s], BICUBIC).
- NICE-GAN (`NICE.py build_model`): RandomHorizontalFlip -> Resize((load, load)) -> RandomCrop -> ToTensor ->
  Normalize; test Resize((s, s)). torchvision's Resize default interpolation: BILINEAR.
- MUNIT (`utils.py get_data_loader_folder`, `test.py`): RandomHorizontalFlip -> Resize(new_size) (int: the
  shorter side) -> RandomCrop -> ToTensor -> Normalize; test Resize(new_size).
- BicycleGAN facades test (`scripts/test_facades.sh`): Resize([286, 286], BICUBIC), centre crop 256 (the crop its
  `--center_crop` flag asks for).
- LSeSim `--augment` (`data/unaligned_dataset.py`): ColorJitter(0.5, 0.5, 0.5, 0.3) on the 8-bit crop: the four
  functional ops ColorJitter.forward calls, in a given order with given factors -> ToTensor -> Normalize.
Aligned files are split like `data/aligned_dataset.py`: A = left half, B = right half.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

OUT = Path(__file__).parent / "data" / "official_transforms.json"
NORMALIZE = T.Compose([T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])

# (dataset, file relative to data/, half: None = the whole file, 0 = left (A), 1 = right (B))
IMAGES = [
    ("horse2zebra", "horse2zebra_mini/trainA/n02381460_1001.jpg", None),
    ("horse2zebra", "horse2zebra_mini/testB/n02391049_400.jpg", None),
    ("afhq", "afhq_mini/cat/flickr_cat_000253.jpg", None),
    ("afhq", "afhq_mini/dog/pixabay_dog_000121.jpg", None),
    ("cityscapes", "cityscapes_mini/train/26.jpg", 0),
    ("cityscapes", "cityscapes_mini/train/26.jpg", 1),
    ("maps", "maps_mini/train/47.jpg", 0),
    ("maps", "maps_mini/train/47.jpg", 1),
    ("facades", "facades_mini/train/1.jpg", 0),
    ("facades", "facades_mini/train/1.jpg", 1),
]
# Whole side-by-side files are not square: they check MUNIT's shorter-side rule.
WIDE = [("cityscapes", "cityscapes_mini/train/26.jpg", None), ("maps", "maps_mini/train/47.jpg", None)]


def open_image(path: Path, half: int | None) -> Image.Image:
    img = Image.open(path).convert("RGB")
    if half is None:
        return img
    w, h = img.size
    w2 = int(w / 2)
    return img.crop((0, 0, w2, h)) if half == 0 else img.crop((w2, 0, w, h))


def digest(t) -> str:
    return hashlib.sha256(np.ascontiguousarray(t.numpy().astype("<f4")).tobytes()).hexdigest()


def cut_train(img, load, crop, x, y, flip):
    out = T.Resize([load, load], T.InterpolationMode.BICUBIC)(img)
    out = TF.crop(out, y, x, crop, crop)
    return TF.hflip(out) if flip else out


def nice_train(img, load, crop, x, y, flip):
    img = TF.hflip(img) if flip else img
    return TF.crop(T.Resize((load, load))(img), y, x, crop, crop)


def munit_train(img, load, crop, x, y, flip):
    img = TF.hflip(img) if flip else img
    return TF.crop(T.Resize(load)(img), y, x, crop, crop)


def jitter(img, order, b, c, s, h):
    ops = (lambda im: TF.adjust_brightness(im, b), lambda im: TF.adjust_contrast(im, c),
           lambda im: TF.adjust_saturation(im, s), lambda im: TF.adjust_hue(im, h))
    for i in order:
        img = ops[i](img)
    return img


def main() -> None:
    root = Path(os.environ["BENCH_FIXTURES"]) / "data"
    cases = []
    train_rules = {"resize_and_crop": (cut_train, dict(filter="bicubic", aspect="square", flip_first=False)),
                   "nicegan": (nice_train, dict(filter="bilinear", aspect="square", flip_first=True)),
                   "munit": (munit_train, dict(filter="bilinear", aspect="shorter_side", flip_first=True))}
    params = [(7, 19, True), (30, 0, False)]
    for dataset, rel, half in IMAGES + WIDE:
        img = open_image(root / rel, half)
        rules = ["munit"] if (dataset, rel, half) in WIDE else list(train_rules)
        for rule in rules:
            fn, pipeline = train_rules[rule]
            load = 256 if rule == "munit" else 286
            for x, y, flip in params:
                if rule == "munit" and (dataset, rel, half) not in WIDE:
                    x, y = 0, 0  # a square image resized to 256 leaves no room to crop 256
                if rule == "munit" and (dataset, rel, half) in WIDE:
                    y = 0  # the shorter side is the height: no vertical room
                t = NORMALIZE(fn(img, load, 256, x, y, flip))
                cases.append({"dataset": dataset, "file": rel, "half": half, "kind": "train", "rule": rule,
                              "pipeline": pipeline, "load": load, "crop": 256, "x": x, "y": y, "flip": flip,
                              "shape": list(t.shape), "sha256": digest(t)})
        tests = {"resize_and_crop": (T.Resize([256, 256], T.InterpolationMode.BICUBIC), "square", "bicubic", 256, 0),
                 "nicegan": (T.Resize((256, 256)), "square", "bilinear", 256, 0),
                 "munit": (T.Resize(256), "shorter_side", "bilinear", 256, 0),
                 "bicyclegan_facades": (T.Compose([T.Resize([286, 286], T.InterpolationMode.BICUBIC),
                                                   T.CenterCrop(256)]), "square", "bicubic", 286, 256)}
        for rule, (tf, aspect, filt, size, crop) in tests.items():
            if (dataset, rel, half) in WIDE and rule != "munit":
                continue
            t = NORMALIZE(tf(img))
            cases.append({"dataset": dataset, "file": rel, "half": half, "kind": "test", "rule": rule,
                          "pipeline": dict(filter=filt, aspect=aspect, flip_first=False), "size": size, "crop": crop,
                          "shape": list(t.shape), "sha256": digest(t)})
        if (dataset, rel, half) not in WIDE:
            order, factors = (2, 0, 3, 1), (1.31, 0.62, 1.44, -0.17)
            t = NORMALIZE(jitter(cut_train(img, 286, 256, 7, 19, True), order, *factors))
            cases.append({"dataset": dataset, "file": rel, "half": half, "kind": "jitter", "rule": "lsesim_augment",
                          "pipeline": dict(filter="bicubic", aspect="square", flip_first=False), "load": 286,
                          "crop": 256, "x": 7, "y": 19, "flip": True, "order": list(order), "factors": list(factors),
                          "shape": list(t.shape), "sha256": digest(t)})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    import PIL
    import torchvision

    OUT.write_text(json.dumps({"made_by": "tests/make_official_transform_hashes.py",
                               "versions": {"pillow": PIL.__version__, "torchvision": torchvision.__version__},
                               "cases": cases}, indent=1) + "\n")
    print(f"{len(cases)} cases -> {OUT}")


if __name__ == "__main__":
    main()
