"""Dataset specs: names, directions, splits, facts from methods.md §4, and where roots are looked up."""

from __future__ import annotations

import pytest

from bench.data import dataset_names, get_spec, resolve_root
from bench.data.roots import cache_dir
from bench.errors import DataError, UnknownNameError, UsageError


@pytest.fixture(autouse=True)
def _no_data_root(monkeypatch):
    monkeypatch.delenv("BENCH_DATA_ROOT", raising=False)


def test_names_and_unknown_name():
    assert dataset_names() == ["cityscapes", "horse2zebra", "afhq", "maps", "facades", "toy"]
    with pytest.raises(UnknownNameError, match="did you mean 'facades'"):
        get_spec("facade")


@pytest.mark.parametrize("name,default,layout_dir,aligned", [
    ("cityscapes", "label2photo", "BtoA", True),
    ("horse2zebra", "horse2zebra", "AtoB", False),
    ("afhq", "cat2dog", "AtoB", False),
    ("maps", "map2satellite", "BtoA", True),
    ("facades", "label2photo", "BtoA", True),
    ("toy", "circles2squares", "AtoB", True),
])
def test_default_directions_follow_the_papers(name, default, layout_dir, aligned):
    spec = get_spec(name)
    assert spec.default_direction == default == spec.directions[0]
    assert spec.normalize_direction(None) == default
    assert spec.normalize_direction(layout_dir) == default
    assert spec.layout_direction(None) == layout_dir
    assert spec.aligned is aligned
    assert set(spec.counts) == set(spec.splits)


def test_direction_names():
    afhq = get_spec("afhq")
    assert set(afhq.directions) == {"cat2dog", "cat2wild", "dog2cat", "dog2wild", "wild2cat", "wild2dog"}
    assert afhq.resolve_direction("dog2cat") == ("dog", "cat")
    assert afhq.resolve_direction(domains=("wild", "dog")) == ("wild", "dog")
    assert afhq.layout_direction("cat2wild") is None
    maps = get_spec("maps")
    assert maps.normalize_direction("AtoB") == "satellite2map"
    with pytest.raises(UsageError, match="did you mean 'map2satellite'"):
        maps.normalize_direction("map2satelite")


def test_official_counts_and_splits():
    assert get_spec("horse2zebra").counts == {"train": {"horse": 1067, "zebra": 1334},
                                              "test": {"horse": 120, "zebra": 140}}
    assert get_spec("cityscapes").counts["test"]["photo"] == 500
    assert get_spec("cityscapes").splits["test"] == ("val", "test")  # pix2pix tar has val/, the script test/
    assert get_spec("afhq").splits["test"][0] == "val"  # the official zip has val/, not test/
    assert get_spec("facades").counts["test"]["label"] == 106
    assert get_spec("facades").required_splits == ("train", "test")
    with pytest.raises(UsageError, match="valid: train, test"):
        get_spec("horse2zebra").check_split("val")


def test_every_spec_names_its_source_and_terms():
    for name in dataset_names():
        spec = get_spec(name)
        assert spec.citation and spec.licence
        assert spec.downloadable or spec.manual_instructions or spec.layout == "generated"


def test_root_lookup_order(tmp_path, monkeypatch):
    cached = cache_dir() / "datasets" / "maps"
    assert cache_dir() == tmp_path / "cache"
    with pytest.raises(DataError, match=f"not found at {cached}; run `bench data get maps`"):
        resolve_root("maps")
    cached.mkdir(parents=True)
    assert resolve_root("maps") == cached
    env = tmp_path / "env"
    (env / "maps").mkdir(parents=True)
    monkeypatch.setenv("BENCH_DATA_ROOT", str(env))
    assert resolve_root("maps") == env / "maps"
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    assert resolve_root("maps", explicit) == explicit
    with pytest.raises(DataError, match="see `bench data get cityscapes` for how to prepare it"):
        resolve_root("cityscapes")
