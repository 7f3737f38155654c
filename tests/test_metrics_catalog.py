"""The metric catalogue is the one home of each metric's facts; everything else reads it."""

import pytest

from bench.errors import UsageError
from bench.metrics import catalog
from bench.metrics.result import MetricResult


def test_directions_units_and_details():
    assert not catalog.higher_is_better("fid") and catalog.higher_is_better("ssim")
    assert catalog.get("kid").unit == "×100" and catalog.get("kid").label == "KID×100"
    assert catalog.get("swd_level_16") is catalog.get("swd")  # a detail key resolves to its metric
    assert catalog.get("kid_std") is catalog.get("kid")
    assert catalog.get("pixel_acc").name == "pixel_acc"  # not mistaken for a detail of another metric
    assert catalog.get("miou").direction == "maximize" and catalog.get("fid").direction == "minimize"
    assert catalog.is_better("fid", 10.0, 20.0) and not catalog.is_better("psnr", 10.0, 20.0)
    assert catalog.is_better("psnr", 1.0, None)
    assert catalog.get("fid").format(12.345) == "12.3" and catalog.get("fid").format(None) == "—"


def test_filters():
    assert catalog.names(kind="paired") == ("l1", "psnr", "ssim")
    assert set(catalog.names(eval_time=True)) == {"fid", "kid", "swd"}
    assert "sec_per_iter" in catalog.names(scored=False) and "sec_per_iter" not in catalog.names(scored=True)


def test_unknown_and_refused_names_are_one_line_usage_errors():
    with pytest.raises(UsageError, match="did you mean 'fid'"):
        catalog.get("fdi")
    with pytest.raises(UsageError, match="fc layer"):
        catalog.get("is")
    with pytest.raises(UsageError, match="--metric: unknown metric 'nope'"):
        catalog.parse_metrics("fid,nope")
    with pytest.raises(UsageError, match="published-only"):
        catalog.parse_metrics("sec_per_iter", scored_only=True)
    assert catalog.parse_metrics(["fid,KID", "fid", " ssim "]) == ["fid", "kid", "ssim"]


def test_results_take_their_direction_from_the_catalogue():
    assert MetricResult("psnr", 30.0).higher_is_better
    assert not MetricResult.missing("fid", "no weights").higher_is_better
