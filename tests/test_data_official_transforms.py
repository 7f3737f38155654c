"""bench's loaders against the official loaders' outputs on the five real fixtures, bit for bit.

The expected hashes in tests/data/official_transforms.json were recorded once by
tests/make_official_transform_hashes.py, an independent rebuild of each official rule from plain PIL /
torchvision calls (no bench code). A change of filter, aspect rule or order of operations changes the hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import methods
from bench.data.transforms import (CropFlip, ImageRef, Jitter, Pipeline, color_jitter, load_image, to_tensor,
                                   train_crop, train_transform)
from bench.data.transforms import test_transform as eval_transform  # not collected as a test

RECORD = json.loads((Path(__file__).parent / "data" / "official_transforms.json").read_text())
CASES = RECORD["cases"]
DATASETS = ("horse2zebra", "afhq", "cityscapes", "maps", "facades")


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(np.ascontiguousarray(t.numpy().astype("<f4")).tobytes()).hexdigest()


def bench_output(root: Path, case: dict) -> torch.Tensor:
    img = load_image(ImageRef(str(root / case["file"]), case["half"]))
    pipeline = Pipeline(**case["pipeline"])
    if case["kind"] == "train":
        params = CropFlip(case["x"], case["y"], case["flip"])
        return train_transform(img, case["load"], case["crop"], params, True, pipeline)
    if case["kind"] == "test":
        return eval_transform(img, case["size"], pipeline, case["crop"])
    crop = train_crop(img, case["load"], case["crop"], CropFlip(case["x"], case["y"], case["flip"]), True, pipeline)
    return to_tensor(color_jitter(crop, Jitter(tuple(case["order"]), *case["factors"])))


def _id(case: dict) -> str:
    where = Path(case["file"]).stem + ("" if case["half"] is None else "AB"[case["half"]])
    extra = f"-{case['x']},{case['y']},{int(case['flip'])}" if "x" in case else ""
    return f"{case['dataset']}-{where}-{case['kind']}-{case['rule']}{extra}"


def test_every_fixture_dataset_and_rule_is_covered():
    assert {c["dataset"] for c in CASES} == set(DATASETS)
    for kind, rules in (("train", {"resize_and_crop", "nicegan", "munit"}),
                        ("test", {"resize_and_crop", "nicegan", "munit", "bicyclegan_facades"}),
                        ("jitter", {"lsesim_augment"})):
        for dataset in DATASETS:
            assert {c["rule"] for c in CASES if c["kind"] == kind and c["dataset"] == dataset} == rules
    assert any(c["rule"] == "munit" and c["half"] is None and c["dataset"] == "cityscapes" for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_bench_loader_equals_the_official_loader_bitwise(fixtures_dir, case):
    out = bench_output(fixtures_dir / "data", case)
    assert list(out.shape) == case["shape"]
    assert digest(out) == case["sha256"]


def test_the_rules_differ_where_the_official_loaders_differ(fixtures_dir):
    """Bicubic vs bilinear and flip order change the pixels: the hashes above can tell them apart."""
    case = next(c for c in CASES if c["kind"] == "test" and c["rule"] == "nicegan" and c["dataset"] == "afhq")
    img = load_image(ImageRef(str(fixtures_dir / "data" / case["file"]), case["half"]))
    bilinear = eval_transform(img, 256, Pipeline(filter="bilinear"))
    bicubic = eval_transform(img, 256, Pipeline(filter="bicubic"))
    diff = (bilinear - bicubic).abs()
    assert digest(bicubic) != case["sha256"] and diff.mean() > 1e-3 and diff.max() > 0.05


@pytest.mark.parametrize(("method", "rule"), [("cut", "resize_and_crop"), ("cyclegan", "resize_and_crop"),
                                              ("enco", "resize_and_crop"), ("nicegan", "nicegan"),
                                              ("nicegan_light", "nicegan"), ("munit", "munit")])
def test_methods_read_their_official_rule(method, rule):
    cfg = methods.get(method).make_config("paper")
    train = next(c for c in CASES if c["kind"] == "train" and c["rule"] == rule)
    test = next(c for c in CASES if c["kind"] == "test" and c["rule"] == rule)
    assert cfg.pipeline == Pipeline(**train["pipeline"], sampling=cfg.sampling)
    assert (cfg.load_size, cfg.crop_size) == (train["load"], train["crop"])
    assert cfg.test_resize == (test["size"], test["crop"])
    assert Pipeline(cfg.resize_filter, cfg.resize_aspect) == Pipeline(test["pipeline"]["filter"],
                                                                     test["pipeline"]["aspect"])


def test_bicyclegan_facades_tests_like_its_script_and_lsesim_jitters_in_the_loader():
    cfg = methods.get("bicyclegan").make_config("paper", dataset="facades")
    case = next(c for c in CASES if c["rule"] == "bicyclegan_facades")
    assert cfg.test_resize == (case["size"], case["crop"])
    assert methods.build("lsesim", device="meta").data_pipeline().color_jitter
    assert not methods.build("fsesim", device="meta").data_pipeline().color_jitter
