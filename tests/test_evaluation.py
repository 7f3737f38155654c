"""What a run scores comes from data (catalogue scopes, dataset specs, method declarations), not from names.

evaluation.py checked for "cityscapes" and for hasattr(method, "reconstruct"), and DatasetSpec.eval_metrics was
never read: these tests give a new dataset and a new method the same treatment by declaration alone.
"""

from __future__ import annotations

import dataclasses

import pytest

import methods
from bench.data import registry as data_registry
from bench.evaluation import run_metrics, wanted_metrics
from bench.metrics import catalog
from methods.base import Method

DRN = ("miou", "pixel_acc", "class_acc")
ALWAYS = ("fid", "kid", "swd")
ALIGNED = ("l1", "psnr", "ssim")


def test_scopes_decide_what_every_registered_method_scores():
    for name in methods.names():
        cls = methods.get(name)
        got = run_metrics("toy", None, cls)
        assert got[:6] == ALWAYS + ALIGNED
        assert set(got[6:]) == set(cls.extra_metrics)
    assert run_metrics("horse2zebra", None, methods.get("cut")) == ALWAYS  # unaligned: no ground-truth scores
    assert run_metrics("cityscapes", "label2photo", methods.get("cut")) == ALWAYS + ALIGNED + DRN
    # CycleGAN's B->A evaluation of a Cityscapes run makes label maps: no DRN scores there
    assert run_metrics("cityscapes", "photo2label", methods.get("cyclegan")) == ALWAYS + ALIGNED


def test_a_dataset_spec_lists_its_own_metrics_by_direction(monkeypatch):
    """A dataset other than Cityscapes gets the DRN scores by listing them (read from DatasetSpec.eval_metrics)."""
    toy = data_registry.get_spec("toy")
    monkeypatch.setitem(data_registry.DATASETS, "toy", dataclasses.replace(toy, eval_metrics={"circles2squares": DRN}))
    cut = methods.get("cut")
    assert run_metrics("toy", None, cut) == ALWAYS + ALIGNED + DRN
    assert run_metrics("toy", "squares2circles", cut) == ALWAYS + ALIGNED
    with pytest.raises(ValueError, match="scope 'dataset'"):
        dataclasses.replace(toy, eval_metrics={"circles2squares": ("fid",)})
    with pytest.raises(ValueError, match="direction 'cats2dogs'"):
        dataclasses.replace(toy, eval_metrics={"cats2dogs": DRN})


def test_a_method_declares_its_extra_metrics():
    """recon_l1 follows the declaration, not whether the class happens to have a `reconstruct` attribute."""

    class WithEncoder(Method):
        extra_metrics = ("lpips_diversity", "recon_l1")

    class Reconstructs(Method):  # has the attribute, declares nothing: nothing extra is scored
        def reconstruct(self, a, b):
            return b

    assert run_metrics("facades", None, WithEncoder)[-2:] == ("lpips_diversity", "recon_l1")
    assert run_metrics("facades", None, Reconstructs) == ALWAYS + ALIGNED
    assert methods.get("bicyclegan").extra_metrics == ("lpips_diversity", "recon_l1")
    assert methods.get("munit").extra_metrics == ("lpips_diversity",)


def test_declared_metrics_are_catalogue_metrics_of_scope_method_and_supported():
    for name in methods.names():
        cls = methods.get(name)
        for m in cls.extra_metrics:
            assert catalog.get(m).scope == "method", (name, m)
        if "recon_l1" in cls.extra_metrics:
            assert callable(getattr(cls, "reconstruct", None)), name
        if "lpips_diversity" in cls.extra_metrics:
            assert cls.multimodal and cls.sample_z is not Method.sample_z, name
    with pytest.raises(ValueError, match="scope 'method'"):
        catalog.scored(aligned=True, method=("miou",))


def test_eval_metrics_narrow_the_set_and_the_reverse_direction_keeps_what_applies():
    from bench.runner import build_run_config

    cfg = build_run_config("cyclegan", "cityscapes", 0, "smoke", {"eval.metrics": "fid,miou"}, out="unused")
    cls = methods.get("cyclegan")
    assert wanted_metrics(cfg, cls) == ["fid", "miou"]
    assert wanted_metrics(cfg, cls, "photo2label") == ["fid"]
    full = build_run_config("cyclegan", "cityscapes", 0, "smoke", {}, out="unused")
    assert wanted_metrics(full, cls) == list(ALWAYS + ALIGNED + DRN)
